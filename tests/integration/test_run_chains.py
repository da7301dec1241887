"""Run chains, on fakeredis and a real server: a run that continued as new stays
readable by its run id (describe, history, result), for the namespace's run retention;
`result()` follows the chain (or not: follow_runs=False); `continue_as_new` with
args=, memo=, task_queue= and workflow=."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from engine.errors import WorkflowContinuedAsNewError
from sdk import Client, InvalidArgumentError, Worker, WorkflowNotFoundError, workflow
from tests.integration.helpers import queue_worker

pytestmark = pytest.mark.anyio


@workflow.defn
class Countdown:
    @workflow.run
    async def run(self, left: int) -> dict[str, Any]:
        info = workflow.info()
        if left > 0:
            workflow.continue_as_new(args=[left - 1], memo={"left": left - 1})
        return {"run_id": info.run_id, "first": info.first_execution_run_id,
                "continued": info.continued_run_id, "memo": workflow.memo()}


@workflow.defn
class Elsewhere:
    @workflow.run
    async def run(self, note: str) -> str:
        return f"{note} on {workflow.info().task_queue} as {workflow.info().workflow_type}"


@workflow.defn
class Mover:
    @workflow.run
    async def run(self) -> str:
        workflow.continue_as_new("moved", task_queue="other", workflow=Elsewhere.run)


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    return queue_worker(client, {"workflows": [Countdown, Mover, Elsewhere]}, options)


async def test_closed_runs_stay_readable_by_run_id(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Countdown.run, 2, id="c-1", task_queue="q")
        with anyio.fail_after(10):
            last = await handle.result()
    first = handle.run_id
    assert first is not None and last["first"] == first and last["memo"] == {"left": 0}
    # Walk the chain back from the last run by describe of each run id.
    runs = [last["run_id"]]
    while True:
        desc = await client.get_workflow_handle("c-1", run_id=runs[-1]).describe()
        assert desc.run_id == runs[-1] and desc.first_execution_run_id == first
        if desc.continued_run_id is None:
            break
        runs.append(desc.continued_run_id)
    assert runs[-1] == first and len(runs) == 3
    old = client.get_workflow_handle("c-1", run_id=first)
    desc = await old.describe()
    assert desc.status == "CONTINUED_AS_NEW" and desc.close_time is not None
    types = [e.type for e in (await old.fetch_history()).events]
    assert types[0] == "WorkflowExecutionStarted"
    assert types[-1] == "WorkflowExecutionContinuedAsNew"
    assert (await old.fetch_history()).events[0].attributes["input"] == [2]
    # result(): followed to the chain's end by default; the run's own with follow_runs=False.
    assert (await old.result())["run_id"] == runs[0]
    with pytest.raises(WorkflowContinuedAsNewError) as info:
        await old.result(follow_runs=False)
    assert info.value.new_execution_run_id == runs[1]
    assert await client.get_workflow_handle("c-1", run_id=runs[0]).result(
        follow_runs=False) == last
    # The handle from the start follows the chain's current run.
    assert (await handle.describe()).run_id == runs[0]
    # The closed run's keys, in the workflow's shard, expire with the retention.
    ttl = await client.redis.pttl(client.keys.closed_run_history("c-1", first))
    assert 0 < ttl <= 7 * 24 * 3600 * 1000


async def test_unknown_run_id(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Countdown.run, 0, id="c-2", task_queue="q")
        with anyio.fail_after(10):
            await handle.result()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("c-2", run_id="f" * 32).describe()


async def test_retention_zero_keeps_no_closed_run(client: Client) -> None:
    client.run_retention_ms = 0  # as Client.connect(run_retention=0) sets it
    async with worker(client):
        handle = await client.start_workflow(Countdown.run, 1, id="c-3", task_queue="q")
        with anyio.fail_after(10):
            last = await handle.result()
    assert handle.run_id is not None and last["continued"] == handle.run_id
    assert not await client.redis.exists(client.keys.closed_run("c-3", handle.run_id))
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("c-3", run_id=handle.run_id).describe()


async def test_continue_as_new_to_another_queue_and_type(client: Client) -> None:
    async with worker(client), worker(client, task_queue="other"):
        handle = await client.start_workflow(Mover.run, id="c-4", task_queue="q")
        with anyio.fail_after(10):
            assert await handle.result() == "moved on other as Elsewhere"


async def test_run_retention_is_a_namespace_setting(redis_url: str) -> None:
    from tests.conftest import unique_prefix

    prefix = unique_prefix()
    first = await Client.connect(redis_url, prefix=prefix, run_retention=60)
    second = await Client.connect(redis_url, prefix=prefix)
    try:
        assert first.run_retention_ms == second.run_retention_ms == 60_000
        async with worker(second):
            handle = await second.start_workflow(Countdown.run, 1, id="c-5", task_queue="q")
            with anyio.fail_after(10):
                await handle.result()
        assert handle.run_id is not None
        ttl = await second.redis.pttl(second.keys.closed_run("c-5", handle.run_id))
        assert 0 < ttl <= 60_000
    finally:
        async for key in first.redis.scan_iter(match=f"{prefix}:*"):
            await first.redis.delete(key)
        await first.close()
        await second.close()


@workflow.defn
class Relay:
    def __init__(self) -> None:
        self.got: list[str] = []

    @workflow.signal
    def note(self, text: str) -> None:
        self.got.append(text)

    @workflow.run
    async def run(self, first: bool) -> list[str]:
        await workflow.wait_condition(lambda: bool(self.got))
        if first:
            workflow.continue_as_new(False)
        return self.got


async def test_the_start_handle_signals_and_terminates_the_chains_current_run(
    client: Client,
) -> None:
    async with worker(client, workflows=[Relay]):
        handle = await client.start_workflow(Relay.run, True, id="c-6", task_queue="q")
        await handle.signal(Relay.note, "one")
        with anyio.fail_after(10):
            while (await handle.describe()).continued_run_id is None:
                await anyio.sleep(0.02)
        await handle.signal(Relay.note, "two")  # to the second run, started by this handle
        with anyio.fail_after(10):
            assert await handle.result() == ["two"]
    # A handle that names its run reaches that run only.
    pinned = client.get_workflow_handle("c-6", run_id=handle.run_id)
    with pytest.raises(WorkflowNotFoundError):
        await pinned.signal(Relay.note, "three")


@workflow.defn
class Counted:
    @workflow.query
    def run_number(self) -> int:
        return 0

    @workflow.run
    async def run(self, left: int) -> int:
        if left > 0:
            workflow.continue_as_new(left - 1)
        return left


async def test_a_query_to_a_closed_run_is_refused(client: Client) -> None:
    async with worker(client, workflows=[Counted]):
        handle = await client.start_workflow(Counted.run, 1, id="c-7", task_queue="q")
        with anyio.fail_after(10):
            await handle.result()
        assert await handle.query(Counted.run_number) == 0  # the current run, by replay
    with pytest.raises(InvalidArgumentError, match="not its current run"):
        await client.get_workflow_handle("c-7", run_id=handle.run_id).query(Counted.run_number)
