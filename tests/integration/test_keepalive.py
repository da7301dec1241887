"""Every connection to Redis has TCP keepalive on (engine/keepalive.py): a server host
that vanishes without closing its connections is noticed by the kernel instead of
leaving a blocked read, or a call waiting for its reply, waiting for ever."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from engine.keepalive import KEEPALIVE_IDLE_S, USER_TIMEOUT_MS, keepalive_options
from engine.resp import RespPool
from sdk import Client

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(30)]


def assert_keepalive(sock: Any) -> None:
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == USER_TIMEOUT_MS


async def test_lean_client_connections_keep_alive(redis_url: str) -> None:
    pool = RespPool.from_url(redis_url)
    try:
        assert await pool.execute("PING") in (b"PONG", "PONG")
        assert pool._mux is not None
        assert_keepalive(pool._mux.conn.writer.get_extra_info("socket"))
        # A blocking command's connection (the pollers' XREADGROUP BLOCK) too.
        await pool.execute_blocking("PING")
        assert pool._idle
        assert_keepalive(pool._idle[-1].writer.get_extra_info("socket"))
    finally:
        await pool.close()


async def test_redis_py_connections_keep_alive(real_client: Client) -> None:
    redis = real_client.redis
    if isinstance(redis, RedisCluster):
        kwargs = redis.get_default_node().connection_kwargs
    else:
        kwargs = redis.connection_pool.connection_kwargs
    assert kwargs["socket_keepalive"] is True
    assert kwargs["socket_keepalive_options"] == keepalive_options()
    await redis.ping()  # and the options are ones the server's socket takes
