"""The workflows and activities that the redurable benchmarks run.

`Steps` is the reference workload: a workflow of N (3) sequential trivial activities.
The others exist to measure one thing each. Reading the clock inside workflow code is
not deterministic: `Probe` does it on purpose, only to report when its code saw a signal
(the value is returned, never used to decide a command, so replay is unaffected).
"""

from __future__ import annotations

import asyncio
import mmap
import struct
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sdk import ActivityError, ApplicationError, RetryPolicy, activity, workflow

TIMEOUT = timedelta(seconds=60)
#: A retry at once (`Ends`): the retried attempt's cost, not its backoff, is measured.
RETRY_AT_ONCE = RetryPolicy(initial_interval=timedelta(milliseconds=1))


@activity.defn
async def noop(x: int) -> int:
    return x + 1


@activity.defn
async def stamp() -> int:
    """When this attempt ran (CLOCK_MONOTONIC, shared by every process of the machine)."""
    return time.monotonic_ns()


@workflow.defn
class Steps:
    """The reference workload: `n` sequential trivial activities."""

    @workflow.run
    async def run(self, n: int) -> int:
        x = 0
        for _ in range(n):
            x = await workflow.execute_activity(noop, x, start_to_close_timeout=TIMEOUT)
        return x


@workflow.defn
class Stamps:
    """`n` sequential activities that each return when they ran; the workflow returns
    the last `keep` stamps, so the driver gets the per-step time at the history's tail."""

    def __init__(self) -> None:
        self.done = 0

    @workflow.query
    def steps_done(self) -> int:
        return self.done

    @workflow.run
    async def run(self, n: int, keep: int) -> list[int]:
        stamps: list[int] = []
        for _ in range(n):
            stamps.append(await workflow.execute_activity(stamp, start_to_close_timeout=TIMEOUT))
            self.done += 1
        return stamps[-keep:]


@workflow.defn
class Probe:
    """Receives `n` `ping` signals and returns when its code observed each one."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @workflow.signal
    def ping(self) -> None:
        self.seen.append(time.monotonic_ns())

    @workflow.run
    async def run(self, n: int) -> list[int]:
        await workflow.wait_condition(lambda: len(self.seen) >= n)
        return self.seen


@workflow.defn
class Gate:
    """Completes on the `open` signal."""

    def __init__(self) -> None:
        self.opened = False

    @workflow.signal
    def open(self) -> None:
        self.opened = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.opened)
        return 1


#: Progress slots of the fleet benchmark: its driver's shared file, mapped once per
#: worker process. Slot i (16 bytes) holds (steps done, CLOCK_MONOTONIC ns of the last).
_SLOTS: dict[str, mmap.mmap] = {}
SLOT = struct.Struct("<qq")


def report_progress(path: str, index: int, steps: int) -> None:
    """Tell the fleet driver that workflow `index` has done `steps` steps, and when.
    A memory write: no Redis command and no syscall, so it costs the measured CPU
    nothing. Replays re-run the code of old steps with lower counts: those are not
    written (the reading is of the live step only)."""
    mm = _SLOTS.get(path)
    if mm is None:
        with open(path, "r+b") as f:
            mm = _SLOTS[path] = mmap.mmap(f.fileno(), 0)
    offset = SLOT.size * index
    if struct.unpack_from("<q", mm, offset)[0] < steps:
        # The time first, then the count the driver polls: it reads them in the other order.
        struct.pack_into("<q", mm, offset + 8, time.monotonic_ns())
        struct.pack_into("<q", mm, offset, steps)


@workflow.defn
class Fleet:
    """The fleet benchmark's workflow (scripts/bench/fleet.py). It first grows its
    history with `pad` activities (100 at a time, not measured), then serves steps for
    ever: a `ping` signal is one step; `go(n)` runs n activities one after another, each
    one step. Every step is reported to the driver's slot file (report_progress)."""

    def __init__(self) -> None:
        self.steps = 0
        self.todo = 0
        self.slots = ""
        self.index = 0

    def _step(self) -> None:
        self.steps += 1
        if self.slots:
            report_progress(self.slots, self.index, self.steps)

    @workflow.signal
    def ping(self) -> None:
        self._step()

    @workflow.signal
    def go(self, activities: int) -> None:
        self.todo += activities

    @workflow.run
    async def run(self, slots: str, index: int, pad: int) -> None:
        self.slots, self.index = slots, index
        for start in range(0, pad, 100):
            batch = range(start, min(pad, start + 100))
            await asyncio.gather(
                *(workflow.execute_activity(noop, i, start_to_close_timeout=TIMEOUT) for i in batch)
            )
        self._step()  # ready: the history has its length
        while True:
            await workflow.wait_condition(lambda: self.todo > 0)
            self.todo -= 1
            await workflow.execute_activity(noop, 0, start_to_close_timeout=TIMEOUT)
            self._step()


@activity.defn
async def ends(outcome: str) -> int:
    """Completes ("complete"), fails for good ("final": non-retryable), or fails once to
    be retried and then for good ("retried"): scripts/bench/failure_steps.py."""
    attempt = activity.info().attempt
    if outcome == "final" or (outcome == "retried" and attempt > 1):
        raise ApplicationError("refused", type="Refused", non_retryable=True)
    if outcome == "retried":
        raise ApplicationError("try again", type="Flaky")
    return attempt


@workflow.defn
class Ends:
    """Waits for `go`, then runs `n` activities one after another that end as `outcome`
    says (`ends`); returns how many failed."""

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def start(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, n: int, outcome: str) -> int:
        await workflow.wait_condition(lambda: self.go)
        failed = 0
        for _ in range(n):
            try:
                await workflow.execute_activity(ends, outcome, start_to_close_timeout=TIMEOUT,
                                                retry_policy=RETRY_AT_ONCE)
            except ActivityError:
                failed += 1
        return failed


WORKFLOWS: list[type] = [Steps, Stamps, Probe, Gate, Fleet, Ends]
ACTIVITIES: list[Callable[..., Any]] = [noop, stamp, ends]
