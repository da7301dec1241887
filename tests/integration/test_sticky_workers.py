"""Sticky routing with real workers on a real server (docs/design-notes.md "Sticky
workflows"): a workflow's tasks stay on the worker that has it cached; when that
worker is killed another takes over, with the history intact; a worker that stops
hands its workflows back at once; queries go to the owner; a cache that lets a
workflow go lets its next task go to any worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import events as ev
from sdk import Client, Worker
from sdk.testing import running_worker
from tests.integration.chaos_workflows import Counter
from tests.integration.worker_proc import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TQ = "sticky"


async def _bump_and_see(client: Client, wf_id: str, times: int) -> None:
    """Signal one at a time, each seen by the workflow before the next."""
    handle = client.get_workflow_handle(wf_id)
    for _ in range(times):
        before = await handle.query(Counter.value)
        await handle.signal(Counter.bump)
        with anyio.fail_after(10):
            while await handle.query(Counter.value) != before + 1:
                await anyio.sleep(0.01)


async def _completed_by(client: Client, wf_id: str) -> list[str]:
    return [e.worker for _, e in await client.store.read_history(wf_id)
            if isinstance(e, ev.WorkflowTaskCompleted)]


async def _owner(client: Client, wf_id: str) -> str | None:
    raw: Any = await client.redis.hget(client.keys.workflow(wf_id), "sticky")
    return raw.decode() if raw else None


async def _history_is_whole(client: Client, wf_id: str, signals: int) -> None:
    events = [e for _, e in await client.store.read_history(wf_id)]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert sum(isinstance(e, ev.WorkflowExecutionSignaled) for e in events) == signals


@pytest.mark.timeout(60)
async def test_a_workflows_tasks_stay_on_one_of_three_workers(real_client: Client) -> None:
    client = real_client
    async with running_worker(client, task_queue=TQ, workflows=[Counter], identity="w1"), \
            running_worker(client, task_queue=TQ, workflows=[Counter], identity="w2"), \
            running_worker(client, task_queue=TQ, workflows=[Counter], identity="w3"):
        handles = [await client.start_workflow(Counter.run, 10, id=f"c-{i}", task_queue=TQ)
                   for i in range(6)]
        for handle in handles:
            await _bump_and_see(client, handle.id, 10)
        for handle in handles:
            assert await handle.result() == 10
    for handle in handles:
        workers = await _completed_by(client, handle.id)
        assert len(workers) == 11
        assert len(set(workers)) == 1, workers  # the first worker kept it to the end


@pytest.mark.timeout(60)
async def test_graceful_shutdown_hands_the_workflows_back_at_once(real_client: Client) -> None:
    client = real_client
    first = Worker(client, task_queue=TQ, workflows=[Counter], identity="first",
                   handle_signals=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        handle = await client.start_workflow(Counter.run, 3, id="c-graceful", task_queue=TQ)
        await _bump_and_see(client, handle.id, 1)
        assert await _owner(client, handle.id) == first.sticky
        first.shutdown()
    assert first.sticky is not None
    # Gone with it: its streams, so no task is routed to it (nor waits for its timeout).
    streams = client.store.sticky_streams(TQ, first.sticky)
    assert not await client.redis.exists(*streams)
    await handle.signal(Counter.bump)  # while no worker runs: routed to the shared stream
    shared = client.keys.workflow_tasks(client.keys.shard(handle.id), TQ)
    assert await client.redis.xlen(shared) == 1
    assert await _owner(client, handle.id) is None
    async with running_worker(client, task_queue=TQ, workflows=[Counter], identity="second"):
        await _bump_and_see(client, handle.id, 1)
        assert await handle.result() == 3
    assert (await _completed_by(client, handle.id))[-1] == "second"


@pytest.mark.timeout(60)
async def test_queries_go_to_the_owner(real_client: Client) -> None:
    client = real_client
    async with running_worker(client, task_queue=TQ, workflows=[Counter], identity="q1") as w1, \
            running_worker(client, task_queue=TQ, workflows=[Counter], identity="q2") as w2:
        handle = await client.start_workflow(Counter.run, 5, id="c-query", task_queue=TQ)
        await _bump_and_see(client, handle.id, 2)
        owner = w1 if await _owner(client, handle.id) == w1.sticky else w2
        assert owner.sticky is not None
        stream = client.keys.sticky_queries(TQ, owner.sticky)
        info: Any = await client.redis.xinfo_stream(stream)
        added = int(info["entries-added"])
        for _ in range(5):
            assert await handle.query(Counter.value) == 2
        info = await client.redis.xinfo_stream(stream)
        assert int(info["entries-added"]) == added + 5  # each one asked of the owner
        shared_info: Any = await client.redis.xinfo_stream(client.keys.queries(TQ))
        shared_added = int(shared_info["entries-added"])
        for _ in range(3):
            assert await handle.query(Counter.value) == 2
        shared_info = await client.redis.xinfo_stream(client.keys.queries(TQ))
        assert int(shared_info["entries-added"]) == shared_added  # none to the others


@pytest.mark.timeout(60)
async def test_a_workflow_the_cache_lets_go_is_not_sticky_any_more(real_client: Client) -> None:
    client = real_client
    async with running_worker(client, task_queue=TQ, workflows=[Counter], identity="small",
                              max_cached_workflows=1) as worker:
        one = await client.start_workflow(Counter.run, 1, id="c-one", task_queue=TQ)
        await _bump_and_see(client, one.id, 0)
        with anyio.fail_after(10):
            while await _owner(client, one.id) != worker.sticky:
                await anyio.sleep(0.01)
        two = await client.start_workflow(Counter.run, 1, id="c-two", task_queue=TQ)
        with anyio.fail_after(10):  # two's task made room: one was let go
            while await _owner(client, one.id) is not None:
                await anyio.sleep(0.01)
        assert await _owner(client, two.id) == worker.sticky
        await one.signal(Counter.bump)
        await two.signal(Counter.bump)
        assert await one.result() == 1
        assert await two.result() == 1
    assert worker.stats["cache_evictions"] >= 1


@pytest.mark.timeout(90)
async def test_killing_the_owner_hands_its_workflow_to_another_worker(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    client = real_client
    prefix = client.keys.prefix
    log = (tmp_path / "workers.log").open("ab")
    # A liveness timeout of a minute: only presence and sticky release explain a takeover.
    procs = [WorkerProcess(redis_url, prefix, TQ, "tests.integration.chaos_workflows",
                           liveness=60.0, log=log).start() for _ in range(3)]
    try:
        for proc in procs:
            await anyio.to_thread.run_sync(proc.wait_ready)
        handle = await client.start_workflow(Counter.run, 10, id="c-kill", task_queue=TQ)
        await _bump_and_see(client, handle.id, 5)
        owner_sticky = await _owner(client, handle.id)
        infos: Any = await client.redis.hgetall(client.keys.worker_info(TQ))
        by_sticky = {json.loads(v)["sticky"]: k.decode() for k, v in infos.items()}
        owner_id = by_sticky[owner_sticky]
        owner = next(p for p in procs if p.identity == owner_id)
        assert set(await _completed_by(client, handle.id)) == {owner_id}
        owner.kill()
        await _bump_and_see(client, handle.id, 5)
        with anyio.fail_after(20):
            assert await handle.result() == 10
        after = (await _completed_by(client, handle.id))[6:]
        assert after and owner_id not in after
        await _history_is_whole(client, handle.id, 10)
    finally:
        for proc in procs:
            proc.kill()
        log.close()


@pytest.mark.timeout(60)
async def test_a_worker_taken_for_dead_recreates_its_streams(real_client: Client) -> None:
    """Live workers that took this one for dead (its presence subscription was lost for
    longer than their grace: seen during a cluster reshard) claimed its tasks and
    released its sticky streams. Its read blocked on them ended with "UNBLOCKED the
    stream key no longer exists" (the next one with NOGROUP), and the worker stopped;
    now it creates them again and goes on."""
    client = real_client
    async with running_worker(client, task_queue=TQ, workflows=[Counter],
                              identity="w1") as worker:
        handle = await client.start_workflow(Counter.run, 2, id="c-dead", task_queue=TQ)
        await _bump_and_see(client, "c-dead", 1)
        sticky = worker._plumbing.sticky
        assert sticky is not None
        await client.store.release_sticky(TQ, sticky)  # what the others do
        await _bump_and_see(client, "c-dead", 1)
        with anyio.fail_after(10):
            assert await handle.result() == 2
        streams = client.store.sticky_streams(TQ, sticky)
        with anyio.fail_after(10):
            while not all([await client.redis.exists(s) for s in streams]):
                await anyio.sleep(0.05)
    await _history_is_whole(client, "c-dead", 2)
