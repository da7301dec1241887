"""Workflows of the poison, signal-storm and clock-skew scenarios, importable by a worker
process (`python -m tests.integration.worker_proc --module scripts.chaos.poison_workflows`).

`crash_worker` kills the process that runs it (os._exit), but only where
REDURABLE_CHAOS_ALLOW_EXIT=1 is set: a worker inside a test process must never take the
test run down with it; elsewhere it raises instead.
"""

from __future__ import annotations

import os
from datetime import timedelta

import anyio

from sdk import ActivityError, RetryPolicy, activity, workflow

ALLOW_EXIT_ENV = "REDURABLE_CHAOS_ALLOW_EXIT"
_TIMEOUT = timedelta(seconds=60)


@activity.defn
async def healthy_step(x: int) -> int:
    return x + 1


@workflow.defn
class Healthy:
    """One quick activity: the workflow whose latency the poison must not hurt."""

    @workflow.run
    async def run(self, x: int) -> int:
        result: int = await workflow.execute_activity(
            healthy_step, x, start_to_close_timeout=_TIMEOUT
        )
        return result


@activity.defn
async def crash_worker() -> None:
    if os.environ.get(ALLOW_EXIT_ENV) != "1":
        raise RuntimeError(f"crash_worker exits its process only where {ALLOW_EXIT_ENV}=1")
    os._exit(17)  # no cleanup, no completion: as a segfault or the OOM killer would


@workflow.defn
class CrashesWorker:
    """Its activity kills every worker process that runs it."""

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(crash_worker, start_to_close_timeout=_TIMEOUT)


@workflow.defn
class CrashesWorkflowTask:
    """Its workflow code kills every worker process that runs its workflow task (as a
    crash in an extension module or the OOM killer would): a poison workflow task."""

    @workflow.run
    async def run(self) -> None:
        if os.environ.get(ALLOW_EXIT_ENV) != "1":
            raise RuntimeError(f"CrashesWorkflowTask exits its process only where "
                               f"{ALLOW_EXIT_ENV}=1")
        os._exit(18)


@workflow.defn
class SignalLog:
    """Records every `add` signal in arrival order; returns them once `count` came."""

    def __init__(self) -> None:
        self.items: list[int] = []

    @workflow.signal
    def add(self, n: int) -> None:
        self.items.append(n)

    @workflow.query
    def received(self) -> int:
        return len(self.items)

    @workflow.run
    async def run(self, count: int) -> list[int]:
        await workflow.wait_condition(lambda: len(self.items) >= count)
        return self.items


@activity.defn
async def overstay(seconds: float) -> None:
    await anyio.sleep(seconds)


@workflow.defn
class Clocks:
    """A durable sleep and a wait_condition timeout, each `ms` long, and an activity
    start-to-close timeout of `activity_ms`: the clock-skew scenario reads when each
    fired from the history. (A start-to-close timeout runs from the start mark, which a
    worker sends at once only for timeouts under 200 ms: see LAZY_START_S in
    sdk/worker/activity_tasks.py.)"""

    @workflow.run
    async def run(self, ms: int, activity_ms: int = 150) -> str:
        await workflow.sleep(timedelta(milliseconds=ms))
        await workflow.wait_condition(lambda: False, timeout=timedelta(milliseconds=ms))
        try:
            await workflow.execute_activity(
                overstay, activity_ms / 1000 + 5,
                start_to_close_timeout=timedelta(milliseconds=activity_ms),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as exc:
            return type(exc.cause).__name__
        return "no timeout"
