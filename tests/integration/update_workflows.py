"""Workflows with updates for tests that run workers in their own processes
(tests/integration/test_update_kills.py, scripts/bench/updates.py)."""

from __future__ import annotations

from sdk import workflow


@workflow.defn
class Counter:
    """Counts updates; each handler waits on a durable timer first, so a worker kill
    can fall between an update's acceptance and its completion."""

    def __init__(self) -> None:
        self.count = 0
        self.seen = 0
        self.done = False
        self.released = False

    @workflow.update
    async def hold(self) -> int:
        """Accepted at once, completed only after the `release` signal."""
        await workflow.wait_condition(lambda: self.released)
        self.count += 1
        return self.count

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.update
    async def bump(self, pause: float) -> int:
        if pause > 0:
            await workflow.sleep(pause)
        self.count += 1
        return self.count

    @workflow.update
    def add(self, n: int) -> int:
        self.count += n
        return self.count

    @workflow.signal
    def poke(self) -> None:
        self.seen += 1

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def value(self) -> int:
        return self.count

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.count


WORKFLOWS = [Counter]
ACTIVITIES: list[object] = []
