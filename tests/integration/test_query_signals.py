"""A query sees every signal accepted before it (on a real server: fakeredis has no
concurrency, so it cannot show the race between a workflow task and a query)."""

from __future__ import annotations

import pytest

from sdk import Client, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio

TRIES = 200


@workflow.defn
class Tally:
    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @workflow.signal
    def add(self) -> None:
        self.count += 1

    @workflow.signal
    def stop(self) -> None:
        self.done = True

    @workflow.query
    def total(self) -> int:
        return self.count

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.count


async def test_query_sees_every_acknowledged_signal(real_client: Client) -> None:
    async with running_worker(real_client, task_queue="q", workflows=[Tally]):
        handle = await real_client.start_workflow(Tally.run, id="tally", task_queue="q")
        stale: list[tuple[int, int]] = []
        for i in range(1, TRIES + 1):
            for _ in range(3):
                await handle.signal(Tally.add)
            seen = await handle.query(Tally.total)
            if seen != 3 * i:
                stale.append((3 * i, seen))
        await handle.signal(Tally.stop)
        assert await handle.result() == 3 * TRIES
    assert stale == [], f"{len(stale)} of {TRIES} queries missed signals (expected, got)"
