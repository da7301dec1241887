"""Workflows that schedules start in the schedule tests and scripts/schedule_exactly_once.py
(loaded by worker subprocesses: tests/integration/worker_proc.py)."""

from __future__ import annotations

from sdk import workflow


@workflow.defn
class Tick:
    @workflow.run
    async def run(self, label: str) -> str:
        return f"tick {label} {workflow.info().workflow_id}"


@workflow.defn
class Hold:
    """Runs until signalled: a schedule's previous workflow that is still running."""

    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.released)
        return "released"


WORKFLOWS = [Tick, Hold]
