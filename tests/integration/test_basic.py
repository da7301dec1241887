from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from sdk import ApplicationError, Client, RetryPolicy, activity, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio


@activity.defn
async def double(x: int) -> int:
    if x == 2 and activity.info().attempt < 2:
        raise ApplicationError("flaky once")
    return x * 2


@workflow.defn
class Steps:
    def __init__(self) -> None:
        self.done = 0
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def progress(self) -> int:
        return self.done

    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.execute_activity(
                double,
                i,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=20)),
            )
            self.done += 1
        await workflow.wait_condition(lambda: self.go)
        await workflow.sleep(0.05)
        return total


async def test_steps_signal_query_result(client: Client) -> None:
    async with running_worker(client, task_queue="q", workflows=[Steps], activities=[double]):
        handle = await client.start_workflow(Steps.run, 3, id="wf-basic", task_queue="q")
        with anyio.fail_after(10):
            while await handle.query(Steps.progress) < 3:
                await anyio.sleep(0.02)
        await handle.signal(Steps.proceed)
        with anyio.fail_after(10):
            assert await handle.result() == 6
        assert await handle.query("progress") == 3
        desc = await handle.describe()
        assert desc.status == "COMPLETED"
        types = [e.type async for e in handle.fetch_history()]
        assert types[0] == "WorkflowExecutionStarted"
        assert types[-1] == "WorkflowExecutionCompleted"
        ids = [e.event_id async for e in handle.fetch_history()]
        assert ids == list(range(1, len(ids) + 1))


async def test_activities_are_dispatched_eagerly(client: Client) -> None:
    """A worker that runs both the workflow and its activities takes the activity tasks
    it schedules with the completion itself (no poller wake-up in between)."""
    async with running_worker(
        client, task_queue="q", workflows=[Steps], activities=[double]
    ) as worker:
        handle = await client.start_workflow(Steps.run, 2, id="wf-eager", task_queue="q")
        await handle.signal(Steps.proceed)
        with anyio.fail_after(10):
            assert await handle.result() == 2
    assert worker.stats["eager_activities"] >= 2
