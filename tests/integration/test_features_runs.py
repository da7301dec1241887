"""Listing, logging, gather, continue-as-new, another task queue and history paging end
to end, on fakeredis and on a real server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import structlog

from sdk import (
    Client,
)
from tests.integration.feature_workflows import (
    Chatty,
    Gather,
    Looper,
    OtherQueue,
    Quick,
    WaitForever,
    fresh_records,  # noqa: F401 (autouse)
    worker,
)

pytestmark = pytest.mark.anyio


# --- listing ----------------------------------------------------------------------------


async def test_list_workflows_filters_and_pages(client: Client) -> None:
    ids = [f"list-{i:02d}" for i in range(12)]
    for wid in ids[:8]:
        await client.start_workflow(WaitForever.run, id=wid, task_queue="q")
    for wid in ids[8:]:
        await client.start_workflow(Quick.run, id=wid, task_queue="q")
    async with worker(client):
        for wid in ids[8:]:
            with anyio.fail_after(10):
                await client.get_workflow_handle(wid).result()
    await client.get_workflow_handle(ids[0]).terminate()
    shards = {client.keys.shard(wid) for wid in ids}
    assert len(shards) > 1  # the listing really merges shards

    async def listed(**kw: Any) -> list[str]:
        return [w.id async for w in client.list_workflows(**kw)]

    everything = await listed(page_size=5)
    assert sorted(everything) == ids  # no duplicates, none missing
    assert sorted(await listed(page_size=1)) == ids
    assert sorted(await listed(status="RUNNING", page_size=3)) == ids[1:8]
    assert sorted(await listed(status="COMPLETED", page_size=3)) == ids[8:]
    assert await listed(status="TERMINATED") == [ids[0]]
    assert sorted(await listed(type="Quick", page_size=2)) == ids[8:]
    assert sorted(await listed(type="WaitForever", status="RUNNING")) == ids[1:8]
    assert await listed(type="NoSuchType") == []
    rows = [w async for w in client.list_workflows(status="COMPLETED")]
    assert all(w.workflow_type == "Quick" and w.close_time is not None for w in rows)
    starts = [w.start_time async for w in client.list_workflows() if w.start_time]
    assert len(starts) == len(ids)
    assert starts == sorted(starts, reverse=True)  # newest first


async def test_list_workflows_pages_through_equal_start_times(client: Client) -> None:
    """Many workflows started in the same millisecond: pages must neither repeat nor
    skip them (the cursor is a score, ties are told apart by member)."""
    ids = [f"tie-{i:02d}" for i in range(12)]
    for wid in ids:
        await client.start_workflow(WaitForever.run, id=wid, task_queue="q")
    for shard in range(client.keys.shards):
        key = client.keys.index_start(shard)
        members: Any = await client.redis.zrange(key, 0, -1)
        if members:
            await client.redis.zadd(key, dict.fromkeys(members, 1_700_000_000_000))
    with anyio.fail_after(5):
        listed = [w.id async for w in client.list_workflows(page_size=5)]
    assert sorted(listed) == ids


# --- logging, gather, continue-as-new -----------------------------------------------------


async def test_workflow_logger_silent_on_replay(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        # No sticky cache: every workflow task replays the whole history.
        async with worker(client, max_cached_workflows=0):
            with anyio.fail_after(10):
                await client.execute_workflow(Chatty.run, id="chatty-1", task_queue="q")
    lines = [(e["event"], e.get("step")) for e in logs if e["event"].startswith("chatty")]
    assert lines == [
        ("chatty_step", 0),
        ("chatty_step", 1),
        ("chatty_step", 2),
        ("chatty_done", None),
    ]
    assert all(e["workflow_id"] == "chatty-1" for e in logs if e["event"].startswith("chatty"))


async def test_gather_over_activities_and_timers(client: Client) -> None:
    async with worker(client):
        with anyio.fail_after(10):
            result = await client.execute_workflow(Gather.run, id="gather-1", task_queue="q")
    assert result == [1, None, "two", None, True, [3]]


async def test_continue_as_new(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Looper.run, 1, [], id="loop-1", task_queue="q")
        with anyio.fail_after(10):
            result = await handle.result()
    assert result["n"] == 3
    assert len(set(result["runs"])) == 3
    assert result["runs"][0] == handle.run_id
    desc = await handle.describe()
    assert desc.status == "COMPLETED"
    assert desc.run_id == result["runs"][-1]
    events = [e async for e in handle.fetch_history()]
    assert events[0].type == "WorkflowExecutionStarted"
    assert events[0].attributes["input"] == [3, result["runs"][:2]]
    assert [w.id async for w in client.list_workflows()] == ["loop-1"]


async def _all(it: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in it]


async def test_activity_on_another_task_queue(client: Client) -> None:
    async with worker(client), worker(client, task_queue="elsewhere", workflows=[]):
        with anyio.fail_after(10):
            result = await client.execute_workflow(
                OtherQueue.run, "x", id="other-queue", task_queue="q"
            )
    assert result == ["x", "x", "q"]


async def test_describe_and_history_paging(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Gather.run, id="describe-1", task_queue="q")
        with anyio.fail_after(10):
            await handle.result()
    desc = await handle.describe()
    assert (desc.id, desc.status, desc.workflow_type, desc.task_queue) == (
        "describe-1",
        "COMPLETED",
        "Gather",
        "q",
    )
    assert desc.run_id == handle.run_id
    assert desc.start_time is not None and desc.close_time is not None
    assert desc.start_time <= desc.close_time
    assert desc.pending_activities == []
    assert desc.last_workflow_task_failure is None
    events = [e async for e in handle.fetch_history()]
    assert desc.history_length == len(events) > 10
    paged = [e async for e in handle.fetch_history(page_size=2)]
    assert paged == events
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(events))
