"""Cron workflows (`start_workflow(..., cron_schedule=...)`), on fakeredis and a real
server, with a per-second schedule (cronsim's 6-field form): each run is a new run of
the chain started at a cron time (the first one too), a failed run does not stop the
chain, terminate and cancel end it, and a bad expression fails at the start call."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

import anyio
import pytest

from sdk import (
    ApplicationError,
    CancelledError,
    Client,
    InvalidArgumentError,
    TerminatedError,
    Worker,
    WorkflowDescription,
    WorkflowFailureError,
    workflow,
)
from sdk.testing import WorkflowEnvironment, running_worker

pytestmark = pytest.mark.anyio

EVERY_SECOND = "* * * * * *"


@workflow.defn
class Report:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"{name} {workflow.info().cron_schedule}"


@workflow.defn
class Flaky:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("boom", non_retryable=True)


@workflow.defn
class Waits:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


def worker(client: Client) -> AbstractAsyncContextManager[Worker]:
    return running_worker(client, task_queue="q", workflows=[Report, Flaky, Waits],
                          graceful_shutdown_timeout=0.3)


async def chain_of(client: Client, wid: str) -> list[WorkflowDescription]:
    """The chain's closed runs, newest first (describe of each kept run)."""
    current = await client.get_workflow_handle(wid).describe()
    runs: list[WorkflowDescription] = []
    previous = current.continued_run_id
    while previous is not None:
        desc = await client.get_workflow_handle(wid, run_id=previous).describe()
        runs.append(desc)
        previous = desc.continued_run_id
    return runs


async def wait_for_runs(client: Client, wid: str, count: int) -> list[WorkflowDescription]:
    with anyio.fail_after(20):
        while len(runs := await chain_of(client, wid)) < count:
            await anyio.sleep(0.1)
    return runs


async def test_each_run_is_a_new_run_at_a_cron_time(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Report.run, "daily", id="cron-1", task_queue="q",
                                             cron_schedule=EVERY_SECOND)
        closed = await wait_for_runs(client, "cron-1", 3)
        await handle.terminate("enough")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()  # follows the chain to its end: the terminated run
        assert isinstance(info.value.cause, TerminatedError)
    assert {run.status for run in closed} == {"COMPLETED"}
    assert closed[-1].run_id == handle.run_id
    assert len({run.run_id for run in closed}) == len(closed)
    assert {run.first_execution_run_id for run in closed} == {handle.run_id}
    # Each run's own result, by run id; every run got the first run's input.
    for run in closed:
        one = client.get_workflow_handle("cron-1", run_id=run.run_id)
        assert await one.result(follow_runs=False) == f"daily {EVERY_SECOND}"
    # Every run, the first one too, waited for a cron time (a whole second) before
    # its first workflow task: the later ones on the server's clock, exactly.
    for run in closed:
        events = (await client.get_workflow_handle("cron-1", run_id=run.run_id)
                  .fetch_history()).events
        started, first_task = events[0], events[1]
        backoff = started.attributes["first_workflow_task_backoff_ms"]
        assert backoff > 0
        assert started.attributes["cron_schedule"] == EVERY_SECOND
        assert first_task.type == "WorkflowTaskCompleted"
        if run.run_id != handle.run_id:  # the first run's wait is on the client's clock
            assert (round(started.timestamp.timestamp() * 1000) + backoff) % 1000 == 0


async def test_a_failed_run_does_not_stop_the_chain(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Flaky.run, id="cron-2", task_queue="q",
                                             cron_schedule=EVERY_SECOND)
        closed = await wait_for_runs(client, "cron-2", 2)
        await handle.terminate()
    assert {run.status for run in closed} == {"FAILED"}
    with pytest.raises(WorkflowFailureError) as info:
        await client.get_workflow_handle("cron-2", run_id=closed[0].run_id).result(
            follow_runs=False)
    assert isinstance(info.value.cause, ApplicationError)


async def test_cancel_ends_the_chain(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Waits.run, id="cron-3", task_queue="q",
                                             cron_schedule=EVERY_SECOND)
        await handle.cancel()
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, CancelledError)
        await anyio.sleep(1.5)  # a cron time passes: no new run
        desc = await handle.describe()
    assert (desc.status, desc.run_id) == ("CANCELED", handle.run_id)


@pytest.mark.parametrize("expression", ["", "61 * * * *", "* * *", "every day"])
async def test_a_bad_expression_fails_at_the_start(client: Client, expression: str) -> None:
    with pytest.raises(InvalidArgumentError, match="cron"):
        await client.start_workflow(Report.run, "x", id="cron-4", task_queue="q",
                                    cron_schedule=expression or " ")
    assert await client.store.get_state("cron-4") == {}




@workflow.defn
class Stamp:
    @workflow.run
    async def run(self) -> str:
        return workflow.now().isoformat()


async def test_cron_runs_on_a_skipped_clock() -> None:
    """Every five minutes, over a skipped hour: the runs start on the cron times of the
    server's (skipped) clock."""
    async with await WorkflowEnvironment.start_time_skipping() as env:
        client = env.client
        async with Worker(client, task_queue="q", workflows=[Stamp]):
            handle = await client.start_workflow(Stamp.run, id="cron-5", task_queue="q",
                                                 cron_schedule="*/5 * * * *")
            with anyio.fail_after(30):
                await env.sleep(timedelta(minutes=61))
            closed = await chain_of(client, "cron-5")
            await handle.terminate()
        assert len(closed) >= 11
        for run in closed:
            stamp = await client.get_workflow_handle("cron-5", run_id=run.run_id).result(
                follow_runs=False)
            moment = datetime.fromisoformat(stamp)
            assert (moment.minute % 5, moment.second) == (0, 0)
