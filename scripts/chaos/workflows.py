"""The chaos scenarios' workflow, importable by a worker process
(`python -m tests.integration.worker_proc --module scripts.chaos.workflows`).

`Storm` runs five activities and two durable timers; its result is `storm_expected(n)`,
so the checker knows the right answer of every workflow. Each activity execution
records its start and its end in the ledger (scripts/chaos/ledger.py).
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from scripts.chaos import ledger
from sdk import activity, workflow

#: Long enough that a timeout never stands in for the claim being tested.
_TIMEOUT = timedelta(seconds=120)
STEPS = 5
TIMERS = 2


@activity.defn
async def storm_step(x: int, step: int, delay: float) -> int:
    info = activity.info()
    ledger.record(info.workflow_id, info.activity_id, info.activity_type, info.attempt, "start")
    await anyio.sleep(delay)
    ledger.record(info.workflow_id, info.activity_id, info.activity_type, info.attempt, "done")
    return 3 * x + step


def storm_expected(n: int) -> int:
    x = n
    for step in range(STEPS):
        x = 3 * x + step
    return x


@workflow.defn
class Storm:
    """Five activities, with a timer after the second and the fourth."""

    @workflow.run
    async def run(self, n: int, delay: float = 0.05, timer: float = 0.2) -> int:
        x = n
        for step in range(STEPS):
            x = await workflow.execute_activity(
                storm_step, x, step, delay, start_to_close_timeout=_TIMEOUT
            )
            if step in (1, 3):
                await workflow.sleep(timer)
        return x


WORKFLOWS = [Storm]
ACTIVITIES = [storm_step]
