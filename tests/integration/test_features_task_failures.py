"""Workflow task failures (non-determinism in a live worker, an unknown type) and bad
input (ids, names, payload size, already started, signals that cannot land), on
fakeredis and on a real server."""

from __future__ import annotations

import anyio
import pytest

from sdk import (
    Client,
    InvalidArgumentError,
    PayloadError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from tests.integration.feature_workflows import (
    EvolvingV1,
    EvolvingV2,
    Quick,
    WaitForever,
    fresh_records,  # noqa: F401 (autouse)
    worker,
)
from tests.integration.helpers import eventually

pytestmark = pytest.mark.anyio


# --- workflow task failures ---------------------------------------------------------------


async def test_nondeterminism_in_live_worker(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(EvolvingV1.run, id="evolve-1", task_queue="q")

        async def waiting() -> bool:
            return bool(await handle.query(EvolvingV1.current) == "waiting")

        await eventually(waiting)
    before = [(e.event_id, e.type) async for e in handle.fetch_history()]

    # A worker with changed code picks the workflow up (no cache: it replays).
    async with worker(client, workflows=[EvolvingV2]):
        await handle.signal(EvolvingV1.proceed)

        async def retried() -> bool:
            desc = await handle.describe()
            return desc.workflow_task_attempt >= 3

        await eventually(retried)
        desc = await handle.describe()
        assert desc.status == "RUNNING"
        failure = desc.last_workflow_task_failure
        assert failure is not None
        assert failure["type"] == "NondeterminismError"
        assert "ActivityTaskScheduled" in failure["message"]
        assert "StartTimer" in failure["message"]
    after = [(e.event_id, e.type) async for e in handle.fetch_history()]
    # Nothing written by the failing tasks: only the signal was appended.
    assert after == [*before, (len(before) + 1, "WorkflowExecutionSignaled")]

    # The right code again: the workflow carries on from where it was.
    async with worker(client):
        with anyio.fail_after(10):
            assert await handle.result() == "v1 done"
    assert (await handle.describe()).last_workflow_task_failure is None


async def test_unknown_workflow_type_is_a_task_failure(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow("NoSuchWorkflow", 1, id="unknown-1", task_queue="q")

        async def failed() -> bool:
            return (await handle.describe()).last_workflow_task_failure is not None

        await eventually(failed)
        desc = await handle.describe()
        assert desc.status == "RUNNING"
        assert desc.last_workflow_task_failure is not None
        assert "NoSuchWorkflow" in desc.last_workflow_task_failure["message"]
        assert "not registered" in desc.last_workflow_task_failure["message"]
        # The worker is fine: other workflows run.
        with anyio.fail_after(10):
            assert await client.execute_workflow(Quick.run, 5, id="unknown-2", task_queue="q") == 5


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["has{brace", "has}brace", "new\nline", "nul\x00", "tab\t", "", "x" * 257]
)
async def test_bad_workflow_ids(client: Client, bad_id: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id=bad_id, task_queue="q")
    with pytest.raises(InvalidArgumentError):
        client.get_workflow_handle(bad_id)


async def test_bad_names(client: Client) -> None:
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow("", id="ok", task_queue="q")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow("Bad{Type}", id="ok", task_queue="q")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id="ok", task_queue="")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id="ok", task_queue="has space")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id="ok", task_queue="q" * 129)
    handle = await client.start_workflow(Quick.run, id="ok", task_queue="q")
    with pytest.raises(InvalidArgumentError):
        await handle.signal("")
    with pytest.raises(InvalidArgumentError):
        await handle.query("bad\x01name")
    with pytest.raises(InvalidArgumentError):
        async for _ in client.list_workflows(status="NOPE"):
            pass
    # Nothing of the rejected starts reached Redis.
    assert [w.id async for w in client.list_workflows()] == ["ok"]


async def test_payload_over_limit(client: Client) -> None:
    big = "x" * (2 * 1024 * 1024 + 1)
    with pytest.raises(PayloadError, match="over the limit"):
        await client.start_workflow(Quick.run, big, id="big-1", task_queue="q")
    handle = await client.start_workflow(WaitForever.run, id="big-2", task_queue="q")
    with pytest.raises(PayloadError):
        await handle.signal(WaitForever.poke, big)
    with pytest.raises(PayloadError, match="cannot be encoded"):
        await client.start_workflow(Quick.run, object(), id="big-3", task_queue="q")
    assert [e.type async for e in handle.fetch_history()] == ["WorkflowExecutionStarted"]


async def test_already_started(client: Client) -> None:
    first = await client.start_workflow(WaitForever.run, id="dup-1", task_queue="q")
    with pytest.raises(WorkflowAlreadyStartedError) as info:
        await client.start_workflow(WaitForever.run, id="dup-1", task_queue="q")
    assert info.value.run_id == first.run_id
    # Once closed, the id can be used again: a new run.
    await first.terminate()
    second = await client.start_workflow(Quick.run, 1, id="dup-1", task_queue="q")
    assert second.run_id != first.run_id
    async with worker(client):
        with anyio.fail_after(10):
            assert await second.result() == 1


async def test_signal_unknown_and_closed_workflow(client: Client) -> None:
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").signal("poke")
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").cancel()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").terminate()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").describe()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").result(timeout=2)
    with pytest.raises(WorkflowNotFoundError):
        _ = [e async for e in client.get_workflow_handle("nobody").fetch_history()]
    async with worker(client):
        with anyio.fail_after(10):
            await client.execute_workflow(Quick.run, id="closed-1", task_queue="q")
    with pytest.raises(WorkflowNotRunningError) as info:
        await client.get_workflow_handle("closed-1").signal("poke")
    assert info.value.status == "COMPLETED"
