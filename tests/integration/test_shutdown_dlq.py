"""Graceful shutdown hands work back; tasks delivered too often go to the dead letters."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine.keys import GROUP
from sdk import ActivityError, Client, activity, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio

runs: list[str] = []


@activity.defn
async def slow_step(seconds: float) -> str:
    runs.append(activity.info().workflow_id)
    await anyio.sleep(seconds)
    return "done"


@workflow.defn
class OneSlowStep:
    @workflow.run
    async def run(self, seconds: float) -> str:
        result: str = await workflow.execute_activity(
            slow_step, seconds, start_to_close_timeout=timedelta(seconds=30)
        )
        return result


async def test_shutdown_hands_back_running_activity(real_client: Client) -> None:
    """A worker stopped mid-activity puts the task back at once: another worker finishes
    it long before the liveness timeout would have let it claim the task."""
    client = real_client
    runs.clear()
    liveness = 30.0  # so only the hand-back, not claiming, can explain a fast finish
    async with running_worker(
        client, task_queue="q", workflows=[OneSlowStep], activities=[slow_step],
        liveness_timeout=liveness, graceful_shutdown_timeout=0.1,
    ) as first:
        handle = await client.start_workflow(OneSlowStep.run, 1.0, id="wf-handback",
                                             task_queue="q")
        with anyio.fail_after(10):
            while not runs:
                await anyio.sleep(0.01)
        first.shutdown()
    started = time.monotonic()
    async with running_worker(
        client, task_queue="q", workflows=[OneSlowStep], activities=[slow_step],
        liveness_timeout=liveness,
    ):
        with anyio.fail_after(10):
            assert await handle.result() == "done"
    assert time.monotonic() - started < 5
    assert runs == ["wf-handback", "wf-handback"]  # the first attempt was abandoned


async def test_over_delivered_task_goes_to_dead_letters(client: Client) -> None:
    """A task whose consumers keep dying is moved to the dead-letter stream with the
    reason after max_deliveries, and does not block the queue."""
    keys = client.keys
    await client.store.ensure_groups("q")
    handle = await client.start_workflow(OneSlowStep.run, 0.0, id="wf-poison", task_queue="q")
    shard = keys.shard(handle.id)
    stream = keys.workflow_tasks(shard, "q")
    # A consumer takes the task and dies without ever acknowledging it.
    await client.redis.xreadgroup(GROUP, "ghost", {stream: ">"}, count=10)
    async with running_worker(
        client, task_queue="q", workflows=[OneSlowStep], activities=[slow_step],
        liveness_timeout=0.2, max_deliveries=1,
    ):
        with anyio.fail_after(10):
            while not await client.redis.xlen(keys.dead_letters(shard)):
                await anyio.sleep(0.05)
        healthy = await client.start_workflow(OneSlowStep.run, 0.0, id="wf-healthy",
                                              task_queue="q")
        with anyio.fail_after(10):
            assert await healthy.result() == "done"
    entries: Any = await client.redis.xrange(keys.dead_letters(shard))
    fields = entries[0][1]
    assert fields[b"workflow_id"] == b"wf-poison"
    # The deliveries it had (the ghost's), not counting the claim that did not happen:
    # workflow tasks are claimed suspects apart now, as activity tasks (50_claim.lua).
    assert b"delivered 1 times" in fields[b"reason"]
    assert fields[b"stream"] == stream.encode()


@activity.defn
async def huge_result() -> bytes:
    return b"x" * (3 * 1024 * 1024)


@workflow.defn
class WantsHuge:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                huge_result, start_to_close_timeout=timedelta(seconds=10)
            )
        except ActivityError as exc:
            return f"{type(exc.cause).__name__}: {exc.cause}"
        return "stored"


async def test_oversized_activity_result_fails_without_retry(client: Client) -> None:
    """A result over the payload limit would be as big on every attempt: the activity
    fails at once, non-retryable, instead of retrying for ever."""
    async with running_worker(
        client, task_queue="q", workflows=[WantsHuge], activities=[huge_result]
    ):
        handle = await client.start_workflow(WantsHuge.run, id="wf-huge", task_queue="q")
        with anyio.fail_after(10):
            result = await handle.result()
    assert result.startswith("ApplicationError: activity result cannot be stored")


async def test_departed_workers_are_forgotten(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers silent for long drop out of the workers zset and the consumer groups;
    a consumer still holding a task entry stays (claiming handles it)."""
    from sdk.worker import liveness as _liveness
    from sdk.worker import worker as _worker

    monkeypatch.setattr(_liveness, "DEPARTED_AFTER_MS", 0)
    keys = client.keys
    worker = _worker.Worker(client, task_queue="q", workflows=[OneSlowStep],
                            handle_signals=False)
    await client.store.ensure_groups("q")
    await client.redis.zadd(keys.workers("q"), {"ghost": 1})
    await client.redis.hset(keys.worker_info("q"), "ghost", "{}")
    stream = keys.workflow_tasks(0, "q")
    await client.redis.xreadgroup(GROUP, "ghost", {stream: ">"}, count=1)  # holds nothing
    await client.start_workflow(OneSlowStep.run, 0.0, id="wf-held", task_queue="q")
    held_stream = keys.workflow_tasks(keys.shard("wf-held"), "q")
    await client.redis.xreadgroup(GROUP, "holder", {held_stream: ">"}, count=10)
    await anyio.sleep(0.01)
    await worker.liveness.forget_departed_workers()
    assert await client.redis.zscore(keys.workers("q"), "ghost") is None
    assert not await client.redis.hexists(keys.worker_info("q"), "ghost")
    names = {c["name"] for c in await client.redis.xinfo_consumers(stream, GROUP)}
    assert b"ghost" not in names
    held = {c["name"] for c in await client.redis.xinfo_consumers(held_stream, GROUP)}
    assert b"holder" in held


async def test_shutdown_hands_back_tasks_waiting_in_the_backlog(real_client: Client) -> None:
    """Tasks a worker holds but has not started (claimed from a dead worker while its
    slots were full, speculations to retry) are handed back by a graceful shutdown too:
    left pending on a worker that left the liveness zset, they waited for the idle claim."""
    client = real_client
    runs.clear()
    tq = "backlog"
    stream = client.keys.activity_tasks(0, tq)
    async with running_worker(
        client, task_queue=tq, workflows=[OneSlowStep], activities=[slow_step],
        max_concurrent_activities=1, liveness_timeout=30.0, graceful_shutdown_timeout=0.1,
    ) as worker:
        await client.start_workflow(OneSlowStep.run, 5.0, id="wf-busy", task_queue=tq)
        with anyio.fail_after(10):
            while not runs:
                await anyio.sleep(0.01)
        await anyio.sleep(0.6)  # the activity poller's read (blocked <= 0.5 s) is over
        # A dead worker's task, claimed while our only slot is busy: it waits.
        await client.redis.xadd(stream, {
            "workflow_id": "ghost", "run_id": "r", "activity_id": "1", "attempt": "1",
            "activity_type": "slow_step", "input": client.codec.encode([0.0])})
        await client.redis.xreadgroup(GROUP, "dead", {stream: ">"}, count=1)
        claimed, _, _ = await client.store.claim_from_consumer(
            stream, 0, "dead", worker.identity, 5)
        worker._activity_tasks.adopt(stream, claimed)
        assert len(worker._activity_tasks.backlog) == 1
        worker.shutdown()
    pending: Any = await client.redis.xpending_range(
        stream, GROUP, "-", "+", 10, consumername=worker.identity)
    assert pending == []


async def test_idle_claim_takes_suspects_apart(client: Client) -> None:
    """rd_claim given max_suspects: idle entries delivered more than once (suspects) are
    claimed at most that many at a time and only when nothing else is (the rest left
    pending where they are, their delivery count untouched), fresh ones all, over-
    delivered ones dead-lettered; batches follow the cursor."""
    store, redis = client.store, client.redis
    await store.ensure_groups("q")
    stream = client.keys.activity_tasks(0, "q")
    ids: list[Any] = [await redis.xadd(stream, {"n": str(n)}) for n in range(5)]
    await redis.xreadgroup(GROUP, "gone", {stream: ">"})
    await redis.xclaim(stream, GROUP, "gone", 0, ids[1:4])  # twice: suspects
    await redis.xclaim(stream, GROUP, "gone", 0, ids[3:4])  # three times: poison

    async def claim() -> tuple[list[Any], set[bytes]]:
        await anyio.sleep(0.05)
        claimed, suspects = await store.claim_stale_suspects_apart(
            stream, 0, "me", 20, max_deliveries=3, count=2, max_suspects=1)
        return [sid for sid, _ in claimed], suspects

    async def pending() -> list[tuple[Any, Any, int]]:
        entries: Any = await redis.xpending_range(stream, GROUP, "-", "+", 10)
        return [(p["message_id"], p["consumer"], p["times_delivered"]) for p in entries]

    assert await claim() == ([ids[0], ids[4]], set())
    assert await pending() == [(ids[0], b"me", 2), (ids[1], b"gone", 2), (ids[2], b"gone", 2),
                               (ids[4], b"me", 2)]
    letters: Any = await redis.xrange(client.keys.dead_letters(0))
    [(_, letter)] = letters
    assert letter[b"message_id"] == ids[3] and letter[b"deliveries"] == b"3"
    assert b"delivered 3 times without completing" in letter[b"reason"]
    await redis.xack(stream, GROUP, ids[0], ids[4])  # their attempts are over
    assert await claim() == ([ids[1]], {ids[1]})
    assert await pending() == [(ids[1], b"me", 3), (ids[2], b"gone", 2)]
