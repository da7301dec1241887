"""The workflows and activities that the redurable benchmarks run.

`Steps` is the reference workload: a workflow of N (3) sequential trivial activities.
The others exist to measure one thing each. Reading the clock inside workflow code is
not deterministic: `Probe` does it on purpose, only to report when its code saw a signal
(the value is returned, never used to decide a command, so replay is unaffected).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sdk import activity, workflow

TIMEOUT = timedelta(seconds=60)


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


WORKFLOWS: list[type] = [Steps, Stamps, Probe, Gate]
ACTIVITIES: list[Callable[..., Any]] = [noop, stamp]
