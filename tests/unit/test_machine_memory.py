"""A cached run's machine keeps nothing for activities that are done: a dict keeps its
table when emptied, so a run parked after gathering 100 activities held ~4.6 KB of empty
table for as long as it stayed cached (scripts/bench/cache_memory.py, `fleet-pad-300`)."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from sdk import workflow
from tests.unit.sim import Sim

T = timedelta(seconds=10)


@workflow.defn
class Fanout:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, n: int) -> None:
        await asyncio.gather(*(workflow.execute_activity("noop", i, start_to_close_timeout=T)
                               for i in range(n)))
        await workflow.wait_condition(lambda: self.go)


def test_a_run_parked_after_a_fan_out_keeps_no_activity_table() -> None:
    sim = Sim(Fanout, 100)
    sim.activate()
    for seq in range(1, 101):
        sim.complete_activity(seq, None)
    assert sim.activate() == []  # parked on its signal
    assert sys.getsizeof(sim.machine._activities) == sys.getsizeof({})
