"""A workflow task commit wakes the timer loop only for a timer due before the loop's
next scan (engine/lua rd_wft_complete's due answer, engine/calls.py, sdk/worker/timers.py),
on fakeredis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import fakeredis
import pytest

from engine import commands as cmd
from engine.calls import Call, FunctionCaller, text_of
from engine.functions import load_library
from engine.keys import GROUP, Keys
from engine.store import Store, TimerScan, act_complete_due_in, wft_complete_due_in
from sdk.worker.timers import TimerLoop

pytestmark = pytest.mark.anyio


async def started_task(store: Store, workflow_id: str) -> tuple[str, str, str, int, str]:
    """A started workflow task of a new run: run id, epoch, msg id, token, stream."""
    run_id = await store.start(workflow_id, f"r-{workflow_id}", "Wf", "q", b"")
    stream = store.keys.workflow_tasks(store.keys.shard(workflow_id), "q")
    read: Any = await store.redis.xreadgroup(GROUP, "w", {stream: ">"}, count=1)
    msg_id, fields = read[0][1][0]
    msg, epoch = msg_id.decode(), fields[b"epoch"].decode()
    reply = await store.call(
        store.wft_start_call(workflow_id, run_id, epoch, msg, stream, None, 60_000))
    start = store.parse_wft_start(reply)
    assert start is not None
    return run_id, epoch, msg, start.token, stream


async def commit(store: Store, workflow_id: str, commands: list[Any]) -> Any:
    run_id, epoch, msg, token, stream = await started_task(store, workflow_id)
    return await store.call(store.wft_complete_call(
        workflow_id, run_id, epoch, token, msg, stream, "w", 0, "", commands))


def activity(seq: int, schedule_to_close_ms: int) -> cmd.ScheduleActivity:
    return cmd.ScheduleActivity(seq, "act", b"", "q",
                                {"schedule_to_close_ms": schedule_to_close_ms})


@pytest.fixture
async def store() -> Store:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await load_library(redis)
    store = Store(redis, Keys("p", 2))
    await store.ensure_groups("q")
    return store


async def test_a_commit_tells_how_soon_its_earliest_timer_falls_due(store: Store) -> None:
    reply = await commit(store, "a", [activity(1, 60_000), cmd.StartTimer(2, 5_000)])
    assert 4_000 < (wft_complete_due_in(reply) or 0) <= 5_000
    assert wft_complete_due_in(await commit(store, "b", [])) == -1  # nothing added


class Listener:
    def __init__(self) -> None:
        self.dues: list[float | None] = []

    def __call__(self, due: float | None) -> None:
        self.dues.append(due)


async def test_the_caller_hands_listeners_the_due_time_or_none(store: Store) -> None:
    heard = Listener()
    store.timer_listeners.append(heard)
    before = time.monotonic()
    await commit(store, "a", [activity(1, 30_000)])
    # The start: the task's deadline (60 s); the commit: the activity's timeout.
    start_due, commit_due = heard.dues
    assert start_due is not None and before + 59 < start_due <= time.monotonic() + 60
    assert commit_due is not None and before + 29 < commit_due <= time.monotonic() + 30
    await commit(store, "b", [])
    assert len(heard.dues) == 3  # the start only: the empty commit added no timer


async def test_an_activity_retry_tells_its_backoff(store: Store) -> None:
    await commit(store, "a", [cmd.ScheduleActivity(
        1, "act", b"", "q", {"retry": {"initial_interval_ms": 2_000}})])
    stream = store.keys.activity_tasks(store.keys.shard("a"), "q")
    read: Any = await store.redis.xreadgroup(GROUP, "w", {stream: ">"}, count=1)
    msg_id, _ = read[0][1][0]
    failed = await store.call(store.act_complete_call(
        "a", "r-a", "1", "1", msg_id.decode(), stream, failure={"message": "x"}))
    assert text_of(failed[1]) == "retrying"
    assert 1_500 < (act_complete_due_in(failed) or 0) <= 2_000


async def test_an_error_reply_or_a_reply_without_the_answer_is_unknown() -> None:
    caller = FunctionCaller(None)  # type: ignore[arg-type]
    heard = Listener()
    caller.timer_listeners.append(heard)
    replies: list[Any] = [[b"ok", 1, b"1-0", 0, 0, []], RuntimeError("boom")]

    async def answer(calls: object) -> list[Any]:
        return [replies.pop(0)]

    caller._call_many = answer  # type: ignore[method-assign]
    call = Call("rd_wft_complete", [], [], timer_due_in=wft_complete_due_in)
    await caller.call_many([call])
    await caller.call_many([call])
    assert heard.dues == [None, None]


class StubStore:
    def __init__(self) -> None:
        self.scan_times: list[float] = []
        self.timer_listeners: list[Callable[[float | None], None]] = []

    async def fire_timers(self) -> TimerScan:
        self.scan_times.append(time.monotonic())
        return TimerScan(0, False, None)  # nothing left: the loop sleeps max_wait


async def scans_after_nudge(due_in: float | None) -> list[float]:
    """Scan times of a loop (next scan 0.5 s after the first) nudged 0.1 s in."""
    store = StubStore()
    loop = TimerLoop(store, min_interval=0.02, max_wait=0.5)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run, lambda: False)
        await anyio.sleep(0.1)
        for listener in store.timer_listeners:
            listener(None if due_in is None else time.monotonic() + due_in)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    return store.scan_times


async def test_a_timer_due_after_the_next_scan_does_not_wake_the_loop() -> None:
    # An activity's timeout a minute out: the loop scans next at 0.5 s as it meant to.
    assert len(await scans_after_nudge(60.0)) == 1


async def test_a_timer_due_before_the_next_scan_moves_it_to_that_time() -> None:
    first, second = (await scans_after_nudge(0.15))[:2]
    assert 0.24 <= second - first < 0.3  # 0.1 s in + 0.15 s, not at 0.5 s


async def test_an_unknown_due_time_wakes_the_loop_at_once() -> None:
    first, second = (await scans_after_nudge(None))[:2]
    assert second - first < 0.15


async def test_a_commit_scheduling_an_activity_wakes_only_for_an_earlier_timeout(
    store: Store,
) -> None:
    """End to end on fakeredis: the loop's next scan is MAX_WAIT (1 s) away."""
    loop = TimerLoop(store, min_interval=0.02)
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run, lambda: False)
        await anyio.sleep(0.05)
        assert loop.scans == 1
        run_id, epoch, msg, token, stream = await started_task(store, "late")
        await anyio.sleep(0.1)
        assert loop.scans == 1  # the start's deadline is a minute out
        scans = loop.scans
        await store.call(store.wft_complete_call(
            "late", run_id, epoch, token, msg, stream, "w", 0, "", [activity(1, 60_000)]))
        await anyio.sleep(0.1)
        assert loop.scans == scans  # a timeout a minute out: no scan
        run_id, epoch, msg, token, stream = await started_task(store, "soon")
        await anyio.sleep(0.1)
        scans = loop.scans
        await store.call(store.wft_complete_call(
            "soon", run_id, epoch, token, msg, stream, "w", 0, "", [activity(1, 30)]))
        await anyio.sleep(0.15)
        assert loop.scans == scans + 1  # the 30 ms timeout: scanned for it
        tg.cancel_scope.cancel()
