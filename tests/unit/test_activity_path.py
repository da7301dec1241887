"""What an activity step costs a worker, kept cheap without changing what it does:
attempts as plain asyncio tasks (still cancelled when released or the worker stops),
eager workflow tasks handed over together run as one batch, an attempt's
threading.Event made only when waited on (sdk/worker/activity_tasks.py,
workflow_tasks.py take_eager/run_now, sdk/activity.py)."""

from __future__ import annotations

import threading

import anyio
import pytest

from sdk import Client, Worker, activity, workflow
from sdk.activity import ActivityContext, ActivityInfo
from sdk.worker.task_entry import TaskEntry

pytestmark = pytest.mark.anyio
QUEUE = "q"
FIELDS = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1",
          b"attempt": b"1", b"activity_type": b"stubborn", b"input": b"\x90"}


@workflow.defn
class Noop:
    @workflow.run
    async def run(self) -> None:
        return None


async def test_eager_workflow_tasks_handed_over_while_the_lock_is_held_run_as_one_batch(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(fake_client, task_queue=QUEUE, workflows=[Noop], handle_signals=False)
    tasks, plumbing = worker._workflow_tasks, worker._plumbing
    stream = plumbing.workflow_streams[0]
    processed: list[list[str]] = []

    async def process(batch: list[TaskEntry]) -> None:
        processed.append([t.msg_id for t in batch])

    monkeypatch.setattr(tasks, "_process", process)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            await tasks._lock.acquire()  # the poller's batch, say
            for i in range(3):
                await tasks.take_eager([TaskEntry(stream, f"{i}-0", {b"workflow_id": b"w%d" % i})])
            await anyio.sleep(0.05)
            assert processed == []
            tasks._lock.release()
            while not processed:
                await anyio.sleep(0.01)
            await tasks.take_eager([TaskEntry(stream, "9-0", {b"workflow_id": b"w9"})])
            while len(processed) < 2:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert processed == [["0-0", "1-0", "2-0"], ["9-0"]]


async def test_an_attempt_that_outlives_its_release_is_cancelled_when_the_worker_stops(
    fake_client: Client,
) -> None:
    """Attempts are not children of the worker's task group: hand_back_running ends
    the async ones that shield themselves from the release, as the group's end did."""
    started, ended = anyio.Event(), anyio.Event()

    @activity.defn
    async def stubborn() -> None:
        try:
            with anyio.CancelScope(shield=True):
                started.set()
                await anyio.sleep(3)  # past hand_back_running's 2 s
            await anyio.sleep(30)
        finally:
            ended.set()

    worker = Worker(fake_client, task_queue=QUEUE, activities=[stubborn],
                    handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            activities.start([TaskEntry(stream, "1-0", dict(FIELDS))])
            await started.wait()
            await activities.hand_back_running()
            await ended.wait()
            while activities.running:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()


def test_the_cancel_event_is_made_when_asked_for_and_reflects_an_earlier_cancel() -> None:
    info = ActivityInfo(workflow_id="w", run_id="r", activity_id=1, activity_type="t",
                        attempt=1, task_queue=QUEUE)
    early = ActivityContext(info)
    assert early._cancelled is None  # not made by starting an attempt
    event = early.cancelled
    assert isinstance(event, threading.Event) and not event.is_set()
    early.request_cancel()
    assert event.is_set() and early.cancelled is event
    late = ActivityContext(info)
    late.request_cancel()
    assert late._cancelled is None and late.cancelled.is_set()


async def test_housekeeping_wakes_for_attempts_that_outlive_their_lazy_start_only(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = anyio.Event()
    hold = False

    @activity.defn
    async def stubborn() -> None:
        if hold:
            await release.wait()

    worker = Worker(fake_client, task_queue=QUEUE, activities=[stubborn],
                    handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    passes = 0
    real_wake = activities.housekeeping.wake

    def counted_wake() -> None:
        nonlocal passes
        passes += 1
        real_wake()

    activities.housekeeping.wake = counted_wake  # type: ignore[method-assign]

    async def accepted(calls: list[object]) -> list[list[bytes]]:
        return [[b"ok"] for _ in calls]  # no workflow behind these: 'stale' would cancel

    monkeypatch.setattr(activities._store, "call_many", accepted)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            tg.start_soon(activities.housekeeping_loop)
            activities.start([TaskEntry(stream, "1-0", dict(FIELDS))])
            await anyio.sleep(0.15)  # well past LAZY_START_S
            assert not activities.running and passes == 0  # ended first: no wake at all
            hold = True
            activities.start([TaskEntry(stream, "2-0", dict(FIELDS))])
            (running,) = activities.running.values()
            while not running.marked:
                await anyio.sleep(0.01)
            await anyio.sleep(0.1)
            assert passes >= 2  # the mark, then heartbeat passes while it runs
            release.set()
            while activities.running:
                await anyio.sleep(0.01)
            settled = passes
            await anyio.sleep(0.1)
            assert passes == settled and activities.housekeeping.timer is None
            tg.cancel_scope.cancel()
