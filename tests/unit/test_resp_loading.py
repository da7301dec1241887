"""engine/resp.py against a server that is still loading its dataset after a restart:
the LOADING error reply must come out as a ConnectionError (what the worker's loops
retry), not as the command's own failure. Before the fix a worker's timer loop died
on it when Redis restarted from its AOF (tests/chaos/test_redis_crash.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.resp import RespPool, ServerBusyError

pytestmark = pytest.mark.anyio

LOADING = b"-LOADING Redis is loading the dataset in memory\r\n"


@pytest.fixture
async def loading_server() -> AsyncIterator[int]:
    """Answers every command (one per read, enough here) with a LOADING error."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):
            writer.write(LOADING)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def test_loading_reply_is_a_connection_error(loading_server: int) -> None:
    pool = RespPool("127.0.0.1", loading_server)
    try:
        with pytest.raises(BusyLoadingError) as caught:
            await pool.execute("FCALL", "rd_fire_timers", 0)
        assert isinstance(caught.value, RedisConnectionError)
        with pytest.raises(BusyLoadingError):
            await pool.execute_many([("PING",)])
        with pytest.raises(BusyLoadingError):
            await pool.execute_blocking("XREADGROUP", "GROUP", "g", "c", "BLOCK", 10,
                                        "STREAMS", "s", ">")
    finally:
        await pool.close()


async def test_loading_reply_to_connection_setup_is_a_connection_error(
    loading_server: int,
) -> None:
    pool = RespPool("127.0.0.1", loading_server, password="secret")
    try:
        with pytest.raises(BusyLoadingError):
            await pool.execute("PING")
    finally:
        await pool.close()


BUSY = b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL ...\r\n"


@pytest.fixture
async def busy_server() -> AsyncIterator[int]:
    """Answers every command (one per read) with BUSY: a script holds the server."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):
            writer.write(BUSY)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def test_busy_reply_is_a_connection_error(busy_server: int) -> None:
    """BUSY is "not now" as LOADING is: before, the pollers' reads raised it as the
    command's own failure and the worker ended (tests/chaos/test_busy_server.py)."""
    pool = RespPool("127.0.0.1", busy_server)
    try:
        with pytest.raises(ServerBusyError) as caught:
            await pool.execute_many([("FCALL", "rd_fire_timers", 0)])
        assert isinstance(caught.value, RedisConnectionError)
        with pytest.raises(ServerBusyError):
            await pool.execute_blocking("XREADGROUP", "GROUP", "g", "c", "BLOCK", 10,
                                        "STREAMS", "s", ">")
    finally:
        await pool.close()
