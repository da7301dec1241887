"""Queries and signals end to end, on fakeredis and on a real server: query errors, long
queries, queries after completion by replay, signal order, concurrent signals."""

from __future__ import annotations

import time

import anyio
import pytest

from sdk import (
    Client,
    QueryFailedError,
    QueryTimeoutError,
    UnknownQueryError,
    WorkflowNotFoundError,
)
from sdk.examples import order
from tests.integration.feature_workflows import (
    Recorder,
    WaitForever,
    fresh_records,  # noqa: F401 (autouse)
    poked,
    worker,
)
from tests.integration.helpers import eventually

pytestmark = pytest.mark.anyio


# --- queries ----------------------------------------------------------------------------


async def test_query_errors(client: Client) -> None:
    handle = await client.start_workflow(WaitForever.run, id="query-1", task_queue="q")
    # No worker polls the queue: the query times out, with a hint.
    with pytest.raises(QueryTimeoutError, match="no live worker"):
        await handle.query(WaitForever.poked, timeout=0.3)
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("query-nobody").query("poked")
    async with worker(client):
        assert await handle.query(WaitForever.poked) == 0
        with pytest.raises(UnknownQueryError, match="no_such_query") as info:
            await handle.query("no_such_query")
        assert "poked" in str(info.value)
        with pytest.raises(QueryFailedError, match="query handler bug"):
            await handle.query(WaitForever.broken)
        await handle.signal(WaitForever.poke)
        await eventually(lambda: poked(handle))
        assert await handle.query("pokedPlus", 10, 100) == 111
        assert await handle.query(WaitForever.poked_plus, 1) == 2


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_a_query_may_wait_longer_than_five_seconds(real_client: Client) -> None:
    """redis-py 8 gives its pools a 5 s read timeout by default: a query's BLPOP with a
    longer timeout failed with a redis TimeoutError after 5 s, not QueryTimeoutError."""
    handle = await real_client.start_workflow(WaitForever.run, id="query-6s", task_queue="q")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="within 6"):
        await handle.query(WaitForever.poked, timeout=6)
    assert time.monotonic() - started >= 6


async def test_queries_after_completion_by_replay(client: Client) -> None:
    async with worker(client):
        # The signal waits are long, so the order does not give up on a loaded machine
        # between its query saying Paid and the signal (they were 0.05 s); the rating
        # delay is short.
        handle = await client.start_workflow(order.Order.run, 3, 60.0, 0.05, id="order-q",
                                             task_queue="q")

        async def state_is(state: str) -> bool:
            status = await handle.query(order.Order.get_status)
            return bool(status["state"] == state)

        await eventually(lambda: state_is("Paid"))
        await handle.signal(order.Order.picked_up)
        await eventually(lambda: state_is("Picked up"))
        await handle.signal(order.Order.delivered)
        with anyio.fail_after(10):
            assert await handle.result() == "Completed"
    # A new worker has nothing cached: it answers by replaying the history.
    async with worker(client, max_cached_workflows=0):
        status = await handle.query("get_status")
    assert status["state"] == "Completed"
    assert status["product_id"] == 3
    assert status["delivered_at"] is not None


# --- signals ----------------------------------------------------------------------------


async def test_signals_applied_in_order(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Recorder.run, id="signals-1", task_queue="q")
        for n in range(50):
            await handle.signal(Recorder.add, n)
        await handle.signal(Recorder.finish)
        with anyio.fail_after(10):
            assert await handle.result() == list(range(50))
    signals = [e async for e in handle.fetch_history() if e.type == "WorkflowExecutionSignaled"]
    assert [e.attributes["input"] for e in signals[:-1]] == [[n] for n in range(50)]


async def test_concurrent_signals_none_lost_or_duplicated(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Recorder.run, id="signals-2", task_queue="q")
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(handle.signal, Recorder.add, n)

        async def all_in() -> bool:
            return bool(await handle.query(Recorder.count) == 50)

        await eventually(all_in)
        await handle.signal(Recorder.finish)
        with anyio.fail_after(10):
            seen = await handle.result()
    assert sorted(seen) == list(range(50))
