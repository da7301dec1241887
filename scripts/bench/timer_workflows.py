"""Workflows of scripts/bench/timer_latency.py: one that sleeps (timers its worker adds)
and one that waits for ever (ended by its run timeout, a timer the client adds)."""

from __future__ import annotations

from sdk import workflow


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float, times: int) -> None:
        for _ in range(times):
            await workflow.sleep(seconds)


@workflow.defn
class Forever:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)
