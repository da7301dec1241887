"""Workflows for the crash tests and scripts/recovery.py, importable by a worker process
(`python -m tests.integration.worker_proc --module tests.integration.chaos_workflows`).

When REDURABLE_CHAOS_LEDGER names a file, every activity execution appends a line
"<workflow_id> <activity_type> <activity_id> <attempt> start|done" to it when it starts
and when it ends, so a test can tell that each activity ran to its end at least once,
and count the executions that a kill interrupted.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import anyio

from sdk import activity, workflow

#: Long enough that a timeout never stands in for the claim being tested.
_TIMEOUT = timedelta(seconds=60)


def _record(what: str) -> None:
    ledger = os.environ.get("REDURABLE_CHAOS_LEDGER")
    if ledger:
        i = activity.info()
        with open(ledger, "a", encoding="utf-8") as f:
            f.write(f"{i.workflow_id} {i.activity_type} {i.activity_id} {i.attempt} {what}\n")


@activity.defn
async def chaos_double(x: int, delay: float) -> int:
    _record("start")
    await anyio.sleep(delay)
    _record("done")
    return 2 * x


@activity.defn
async def chaos_add(x: int, y: int, delay: float) -> int:
    _record("start")
    await anyio.sleep(delay)
    _record("done")
    return x + y


@activity.defn
async def chaos_square(x: int, delay: float) -> int:
    _record("start")
    await anyio.sleep(delay)
    _record("done")
    return x * x


def chaos_expected(n: int) -> int:
    return (2 * n + 7) ** 2


@workflow.defn
class Chaos:
    """Three activities and a timer; the result is `chaos_expected(n)`."""

    @workflow.run
    async def run(self, n: int, delay: float = 0.1, timer: float = 0.3) -> int:
        a = await workflow.execute_activity(chaos_double, n, delay, start_to_close_timeout=_TIMEOUT)
        await workflow.sleep(timer)
        b = await workflow.execute_activity(chaos_add, a, 7, delay, start_to_close_timeout=_TIMEOUT)
        result: int = await workflow.execute_activity(
            chaos_square, b, delay, start_to_close_timeout=_TIMEOUT
        )
        return result


@activity.defn
async def chaos_slow(delay: float) -> None:
    _record("start")
    await anyio.sleep(delay)
    _record("done")


@workflow.defn
class Slow:
    """One slow activity."""

    @workflow.run
    async def run(self, delay: float) -> str:
        await workflow.execute_activity(chaos_slow, delay, start_to_close_timeout=_TIMEOUT)
        return "done"


@activity.defn
async def tick(step: int, delay: float) -> int:
    await anyio.sleep(delay)
    return step


@workflow.defn
class Looper:
    """Runs short activities one after another for ever (continuing as new every
    `per_run` steps so histories stay short): a workflow that always makes progress."""

    def __init__(self) -> None:
        self.step = 0

    @workflow.query
    def progress(self) -> int:
        return self.step

    @workflow.run
    async def run(self, delay: float = 0.05, per_run: int = 50) -> None:
        for i in range(per_run):
            await workflow.execute_activity(tick, i, delay, start_to_close_timeout=_TIMEOUT)
            self.step = i + 1
        workflow.continue_as_new(delay, per_run)


@workflow.defn
class Waiter:
    """Waits for ever. Its query blocks the worker's whole process when
    REDURABLE_SLOW_QUERY is set: a worker stuck in a query, to be killed."""

    @workflow.query
    def status(self) -> str:
        if os.environ.get("REDURABLE_SLOW_QUERY"):
            time.sleep(60)
        return "waiting"

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn
class Counter:
    """Counts `bump` signals and finishes at `until`."""

    def __init__(self) -> None:
        self.count = 0

    @workflow.signal
    def bump(self) -> None:
        self.count += 1

    @workflow.query
    def value(self) -> int:
        return self.count

    @workflow.run
    async def run(self, until: int) -> int:
        await workflow.wait_condition(lambda: self.count >= until)
        return self.count


WORKFLOWS = [Chaos, Slow, Looper, Waiter, Counter]
ACTIVITIES = [chaos_double, chaos_add, chaos_square, chaos_slow, tick]
