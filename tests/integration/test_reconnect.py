"""A connected Client rides through a server restart (engine/reconnect.py): a private
redis-server with an append-only file is SIGKILLed and started again on the same port
mid-test. Safe calls are retried and applied once; a call whose reply is lost (a proxy
cuts the connection after the server ran it) is answered as the first attempt was;
what is not safe to retry raises ServerUnavailableError; the close watcher that
`handle.result()` relies on survives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.errors import ServerUnavailableError
from engine.reconnect import RetryConfig
from scripts.chaos.proxy import CuttingProxy
from scripts.chaos.server import PrivateRedis, redis_server_binary
from sdk import Client, TerminatedError, WorkflowFailureError

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.skipif(redis_server_binary() is None, reason="needs Debian's redis-server"),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server on a free port with AOF (fsync always): a restart keeps
    every acknowledged write."""
    redis = PrivateRedis(tmp_path / "redis", appendfsync="always").start()
    try:
        yield redis
    finally:
        redis.close()


@pytest.fixture
async def client(server: PrivateRedis) -> AsyncIterator[Client]:
    client = await Client.connect(server.url, prefix="rc")
    try:
        yield client
    finally:
        await client.close()


async def restart(server: PrivateRedis) -> None:
    """SIGKILL and start again from the AOF, off the event loop (it waits for the port)."""
    await anyio.to_thread.run_sync(server.restart)


async def event_types(client: Client, workflow_id: str) -> list[str]:
    return [e.type async for e in client.get_workflow_handle(workflow_id).fetch_history()]


async def signal_inputs(client: Client, workflow_id: str) -> list[Any]:
    handle = client.get_workflow_handle(workflow_id)
    return [e.attributes["input"] async for e in handle.fetch_history()
            if e.type == "WorkflowExecutionSignaled"]


async def test_start_and_signal_after_a_restart_succeed_once(
    server: PrivateRedis, client: Client
) -> None:
    """The first calls after a restart used to fail with "connection lost"."""
    first = await client.start_workflow("Wait", id="before", task_queue="q")
    await restart(server)
    handle = await client.start_workflow("Wait", id="after", task_queue="q")
    await first.signal("go", 1)
    await handle.signal("go", 2)
    assert await event_types(client, "after") == [
        "WorkflowExecutionStarted", "WorkflowExecutionSignaled"]
    assert await signal_inputs(client, "before") == [[1]]
    described = await handle.describe()
    assert described.run_id == handle.run_id
    assert client.connection_stats.failed == 0


async def test_calls_made_while_the_server_is_down_wait_for_it(
    server: PrivateRedis, client: Client
) -> None:
    handle = await client.start_workflow("Wait", id="w", task_queue="q")
    await anyio.to_thread.run_sync(server.kill)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.start_workflow("Wait", id="during", task_queue="q"))
        tg.start_soon(lambda: handle.signal("go", "during"))
        await anyio.sleep(0.3)  # both calls are retrying against a closed port
        await anyio.to_thread.run_sync(server.start)
    assert await signal_inputs(client, "w") == [["during"]]
    assert await event_types(client, "during") == ["WorkflowExecutionStarted"]
    stats = client.connection_stats
    assert stats.interrupted >= 2
    assert stats.recovered >= 2
    assert stats.failed == 0


async def test_retried_calls_whose_reply_was_lost_are_applied_once(
    server: PrivateRedis, tmp_path: Path
) -> None:
    """A proxy forwards the call, lets the server run it, then cuts the connection
    before the reply: the client retries, and the server answers the retry as the
    first call, from the request id."""
    proxy = await CuttingProxy(server.port, cut_rate=1.0, cuts_left=0).start()
    client = await Client.connect(proxy.url, prefix="rc")
    try:
        # The hot path's connection opened first (its setup, CLIENT SETNAME, is a chunk
        # of its own): the cut then falls on the FCALL.
        assert client.fast is not None
        await client.fast.execute("PING")
        proxy.cuts_left = 1
        handle = await client.start_workflow("Wait", id="cut", task_queue="q")
        assert proxy.stats.cuts_after_fcall == 1
        state = await client.store.get_state("cut")
        assert state["run_id"].decode() == handle.run_id  # the retry did not start anew
        assert await event_types(client, "cut") == ["WorkflowExecutionStarted"]

        proxy.cuts_left = 1
        await handle.signal("go", "once")
        assert proxy.stats.cuts_after_fcall == 2
        assert await signal_inputs(client, "cut") == [["once"]]

        proxy.cuts_left = 1
        await handle.terminate("done")
        assert proxy.stats.cuts_after_fcall == 3
        # The retry found the run terminated by its own first attempt: no error.
        assert (await handle.describe()).status == "TERMINATED"
        assert client.connection_stats.recovered == 3
    finally:
        await client.close()
        await proxy.close()


async def test_a_start_retried_after_its_run_closed_is_not_started_again(
    client: Client,
) -> None:
    """rd_start with a run id it already applied answers 'ok' even when that run has
    closed since (else the retry would start a second run)."""
    handle = await client.start_workflow("Wait", id="quick", task_queue="q")
    await handle.terminate("closed before the retry")
    run_id = handle.run_id
    assert run_id is not None
    reply = await client.store.start("quick", run_id, "Wait", "q", client.codec.encode([]))
    assert reply == run_id
    assert (await handle.describe()).status == "TERMINATED"
    assert await event_types(client, "quick") == [
        "WorkflowExecutionStarted", "WorkflowExecutionTerminated"]


async def test_result_waiter_rides_through_a_restart(
    server: PrivateRedis, client: Client
) -> None:
    """The close watcher's subscription is lost with the server; it subscribes again
    and `result()` sees the close that happens after the restart."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, ctx: errors.append(ctx))
    try:
        await wait_through_a_restart(server, client)
    finally:
        loop.set_exception_handler(before)
    assert not errors, errors


async def wait_through_a_restart(server: PrivateRedis, client: Client) -> None:
    handle = await client.start_workflow("Wait", id="r", task_queue="q")
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            outcome: list[BaseException] = []

            async def wait_result() -> None:
                try:
                    await handle.result()
                except WorkflowFailureError as exc:
                    outcome.append(exc)

            tg.start_soon(wait_result)
            await anyio.sleep(0.2)  # subscribed and waiting
            reader = client.close_watcher._reader
            await restart(server)
            while client.close_watcher.resubscribed == 0:
                await anyio.sleep(0.02)
            # The same reader subscribed again: it did not die with the connection.
            assert client.close_watcher._reader is reader
            assert reader is not None and not reader.done()
            await handle.terminate("after the restart")
    assert isinstance(outcome[0].__cause__, TerminatedError)


async def test_an_outage_longer_than_the_retry_time_raises_one_clear_error(
    server: PrivateRedis,
) -> None:
    client = await Client.connect(
        server.url, prefix="rc", retry_config=RetryConfig(max_elapsed_time_millis=300))
    try:
        handle = await client.start_workflow("Wait", id="w", task_queue="q")
        await anyio.to_thread.run_sync(server.kill)
        with pytest.raises(ServerUnavailableError, match=r"stayed out of reach for 0\.3 s") as err:
            await handle.signal("go")
        assert err.value.maybe_applied
        with pytest.raises(ServerUnavailableError):
            await client.start_workflow("Wait", id="x", task_queue="q")
        assert client.connection_stats.failed == 2
        await anyio.to_thread.run_sync(server.start)
        await handle.signal("go")  # back: the client works again by itself
        assert await signal_inputs(client, "w") == [[]]
    finally:
        await client.close()


async def test_a_call_not_safe_to_retry_raises_when_its_reply_is_lost(
    server: PrivateRedis,
) -> None:
    proxy = await CuttingProxy(
        server.port, cut_rate=1.0, cuts_left=0, cut_only=b"XDEL").start()
    client = await Client.connect(proxy.url, prefix="rc")
    try:
        letter: Any = await client.redis.xadd(client.keys.dead_letters(0), {
            "stream": client.keys.workflow_tasks(0, "q"), "message_id": "1-0",
            "deliveries": "9", "reason": "poison", "workflow_id": "p"})
        proxy.cuts_left = 1
        with pytest.raises(ServerUnavailableError, match="may or may not have been applied"):
            await client.drop_dead_letter(f"0/{letter.decode()}")
        assert proxy.stats.cuts == 1
        # It was applied: a retry would have reported it missing, a wrong answer.
        assert await client.count_dead_letters() == 0
    finally:
        await client.close()
        await proxy.close()

