"""The workflow of the update storm (scripts/chaos/update_storm.py), for worker processes."""

from __future__ import annotations

from sdk import workflow


@workflow.defn
class UpdateLog:
    """Appends each update's number to a list and answers its position there; every
    tenth one first waits on a durable timer, so kills fall between acceptance and
    completion too."""

    def __init__(self) -> None:
        self.applied: list[int] = []
        self.done = False

    @workflow.update
    async def add(self, i: int) -> int:
        if i % 10 == 0:
            await workflow.sleep(0.05)
        self.applied.append(i)
        return len(self.applied)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: self.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.applied


WORKFLOWS = [UpdateLog]
ACTIVITIES: list[object] = []
