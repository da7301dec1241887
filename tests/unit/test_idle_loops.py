"""What a worker does while idle: its timer loop (sdk/worker/timers.py), against a stub
store, and the pending counts that let its beat skip empty streams."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import fakeredis
import pytest

from engine.calls import SETS_TIMERS, Call, FunctionCaller
from engine.keys import GROUP, Keys
from engine.store import Store, TimerScan
from sdk.worker.timers import DUE_GAP_S, TimerLoop

pytestmark = pytest.mark.anyio


class StubStore:
    """Answers scans from a script of TimerScans (the last one repeats)."""

    def __init__(self, *answers: TimerScan) -> None:
        self.answers = list(answers)
        self.scan_times: list[float] = []
        self.timer_listeners: list[Callable[[float | None], None]] = []

    async def fire_timers(self) -> TimerScan:
        self.scan_times.append(time.monotonic())
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


async def run_for(loop: TimerLoop, seconds: float, during: Callable[[], None] | None = None
                  ) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run, lambda: False)
        if during is not None:
            await anyio.sleep(seconds / 2)
            during()
            await anyio.sleep(seconds / 2)
        else:
            await anyio.sleep(seconds)
        tg.cancel_scope.cancel()


def loop_on(store: StubStore, min_interval: float = 0.05, max_wait: float = 1.0) -> TimerLoop:
    fake: Store = store  # type: ignore[assignment]
    return TimerLoop(fake, min_interval=min_interval, max_wait=max_wait)


async def test_no_timer_left_sleeps_the_longest_wait() -> None:
    store = StubStore(TimerScan(0, False, None))
    loop = loop_on(store, max_wait=0.2)
    await run_for(loop, 0.5)
    assert 2 <= len(store.scan_times) <= 3  # not 10, as a 50 ms tick would
    assert not store.timer_listeners  # the loop leaves no listener behind


async def test_it_wakes_when_the_next_timer_is_due_not_on_a_tick() -> None:
    store = StubStore(TimerScan(0, False, 120), TimerScan(1, False, None))
    loop = loop_on(store)
    await run_for(loop, 0.3)
    first, second = store.scan_times[:2]
    assert 0.12 <= second - first < 0.16


async def test_a_nudge_wakes_it_after_the_minimum_interval() -> None:
    store = StubStore(TimerScan(0, False, None))
    loop = loop_on(store, min_interval=0.05, max_wait=10)
    nudged_at: list[float] = []

    def nudge() -> None:
        nudged_at.append(time.monotonic())
        for listener in store.timer_listeners:
            listener(None)

    await run_for(loop, 0.4, nudge)
    assert len(store.scan_times) == 2
    assert store.scan_times[1] - nudged_at[0] < 0.03


async def test_more_due_than_one_pass_fires_scans_again_soon() -> None:
    store = StubStore(TimerScan(800, True, 0), TimerScan(10, False, None))
    loop = loop_on(store)
    await run_for(loop, 0.2)
    # Sooner than the loop's usual minimum interval (0.05 s here): the bound is that
    # interval, not DUE_GAP_S plus a margin, so a loaded machine does not fail it.
    assert DUE_GAP_S <= store.scan_times[1] - store.scan_times[0] < 0.05


async def test_calls_that_may_add_timers_nudge_the_listeners() -> None:
    caller = FunctionCaller(None)  # type: ignore[arg-type]
    heard: list[str] = []
    caller.timer_listeners.append(lambda due: heard.append("x"))

    async def nothing(calls: object) -> list[object]:
        return []

    caller._call_many = nothing  # type: ignore[method-assign]
    await caller.call_many([Call("rd_act_heartbeat", [], [])])
    assert heard == []
    await caller.call_many([Call(next(iter(SETS_TIMERS)), [], [])])
    assert heard == ["x"]


async def test_pending_counts_tell_empty_streams_in_one_round_trip() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    store = Store(redis, Keys("p", 2))
    await redis.xgroup_create("busy", GROUP, id="0", mkstream=True)
    await redis.xgroup_create("empty", GROUP, id="0", mkstream=True)
    await redis.xadd("busy", {"a": "1"})
    await redis.xreadgroup(GROUP, "c", {"busy": ">"})
    assert await store.pending_counts(["busy", "empty", "missing"]) == [1, 0, None]
