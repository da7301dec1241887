"""The workflows of the family storm (scripts/chaos/family_storm.py), for worker processes.

`FamilyParent` signals the `Mailbox` workflow (an external one, by id), then starts its
children (`FamilyChild`, ParentClosePolicy.TERMINATE) and returns what they returned.
Every workflow of a family takes updates (`add`, answering "<its id>:<n>") and signals
(`poke`), and finishes only once it has got as many of each as the run was told to
expect, so its result proves each arrived exactly once. A child of a family the storm
terminates is told to expect one signal more than it is sent: it stays running until
the parent close policy ends it.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from scripts.chaos import ledger
from sdk import ParentClosePolicy, activity, workflow

#: Long enough that a timeout never stands in for the claim being tested.
_TIMEOUT = timedelta(seconds=120)
STEPS = 3


@activity.defn
async def family_step(x: int, step: int, delay: float) -> int:
    info = activity.info()
    ledger.record(info.workflow_id, info.activity_id, info.activity_type, info.attempt, "start")
    await anyio.sleep(delay)
    ledger.record(info.workflow_id, info.activity_id, info.activity_type, info.attempt, "done")
    return 2 * x + step


def child_value(n: int) -> int:
    """What a child's activities make of `n`."""
    x = n
    for step in range(STEPS):
        x = 2 * x + step
    return x


class _Mailable:
    """Updates and signals a family workflow takes, and the wait for the expected ones."""

    def __init__(self) -> None:
        self.updates: list[int] = []
        self.pokes: list[int] = []

    @workflow.update
    async def add(self, n: int) -> str:
        if n % 3 == 0:  # some updates wait on a durable timer: kills fall in between
            await workflow.sleep(0.05)
        self.updates.append(n)
        return f"{workflow.info().workflow_id}:{n}"

    @workflow.signal
    def poke(self, n: int) -> None:
        self.pokes.append(n)

    async def _wait_for(self, updates: int, signals: int) -> list[list[int]]:
        await workflow.wait_condition(
            lambda: len(self.updates) >= updates and len(self.pokes) >= signals)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return [sorted(self.updates), sorted(self.pokes)]


@workflow.defn
class FamilyChild(_Mailable):
    @workflow.run
    async def run(self, n: int, delay: float, updates: int, signals: int) -> list[object]:
        x = n
        for step in range(STEPS):
            x = await workflow.execute_activity(
                family_step, x, step, delay, start_to_close_timeout=_TIMEOUT)
        return [x, *await self._wait_for(updates, signals)]


@workflow.defn
class FamilyParent(_Mailable):
    @workflow.run
    async def run(self, children: int, delay: float, mailbox: str, mails: int,
                  updates: int, signals: int, child_updates: int,
                  child_signals: int) -> list[object]:
        tag = workflow.info().workflow_id
        box = workflow.get_external_workflow_handle(mailbox)
        for seq in range(mails):
            await box.signal(Mailbox.deliver, tag, seq)
        handles = [
            await workflow.start_child_workflow(
                FamilyChild.run, args=[i, delay, child_updates, child_signals],
                id=f"{tag}-c{i}", parent_close_policy=ParentClosePolicy.TERMINATE)
            for i in range(children)
        ]
        results = [await h for h in handles]
        return [sum(r[0] for r in results), *await self._wait_for(updates, signals)]


@workflow.defn
class Mailbox:
    """Records every signal it gets, in order, until told to finish."""

    def __init__(self) -> None:
        self.got: list[list[object]] = []
        self.done = False

    @workflow.signal
    def deliver(self, sender: str, seq: int) -> None:
        self.got.append([sender, seq])

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> list[list[object]]:
        await workflow.wait_condition(lambda: self.done)
        return self.got


WORKFLOWS = [FamilyParent, FamilyChild, Mailbox]
ACTIVITIES = [family_step]
