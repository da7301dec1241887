"""engine/resp.py: a caller cancelled while its new connection is still being set up
(AUTH / SELECT / CLIENT SETNAME in flight) must not leave that connection open. Before
the fix the socket was only closed by the garbage collector, with a ResourceWarning
(CI's Cluster pass: tests/chaos/test_cancellation.py, an ECHO cancelled within 2 ms
while the node's first connection was set up)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator

import pytest

from engine.resp import RespPool

pytestmark = pytest.mark.anyio


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """Accepts connections and reads, never answers; the event is set on the first
    bytes received (the connection's setup has been sent)."""
    received = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):
            received.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, received
    finally:
        server.close()
        await server.wait_closed()


def unclosed_after(collect: list[warnings.WarningMessage]) -> list[str]:
    gc.collect()
    return [str(w.message) for w in collect
            if issubclass(w.category, ResourceWarning) and "unclosed" in str(w.message)]


@pytest.mark.parametrize("call", ["execute", "execute_blocking"])
async def test_cancelled_during_setup_closes_the_connection(
    silent_server: tuple[int, asyncio.Event], call: str,
) -> None:
    port, received = silent_server
    pool = RespPool("127.0.0.1", port)
    pool.client_name = "redurable-test"  # a setup command to wait on
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = asyncio.ensure_future(getattr(pool, call)("PING"))
        await asyncio.wait_for(received.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.close()
        await asyncio.sleep(0)  # the transport's close runs on the loop's next turn
        assert unclosed_after(caught) == []
