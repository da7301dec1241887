"""Deploys of a patch against in-flight workflows (docs/versioning.md), on fakeredis and
on a real server: workers of the old and the new code, one after the other on the same
task queue, as a deploy replaces one fleet by the next. The workflow is the golden
PatchedOrder (tests/golden/workflows.py): v1 pushes, v2 sends an SMS behind
workflow.patched("send-sms"), v3 deprecates the patch, v4 has removed the call."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from sdk import Client, Worker, WorkflowHandle
from sdk.testing import running_worker
from tests.golden.workflows import (
    ACTIVITIES,
    PatchedOrderV1,
    PatchedOrderV2,
    PatchedOrderV3,
    PatchedOrderV4,
)
from tests.integration.helpers import eventually

pytestmark = pytest.mark.anyio

PUSH, SMS = "PUSH: PAID", "sms: paid"


def deploy(client: Client, version: type) -> AbstractAsyncContextManager[Worker]:
    """A worker with one version of PatchedOrder: a fresh process as far as the sticky
    cache goes, so it replays every history it picks up."""
    return running_worker(
        client, task_queue="q", workflows=[version], activities=ACTIVITIES,
        graceful_shutdown_timeout=0.3,
    )


async def start(client: Client, workflow_id: str) -> WorkflowHandle:
    """Start an order and wait until the customer was told (the branch is in history)."""
    handle = await client.start_workflow("PatchedOrder", 3, id=workflow_id, task_queue="q")

    async def told() -> bool:
        events = [e async for e in handle.fetch_history()]
        return any(
            e.type == "ActivityTaskCompleted" and e.attributes["activity_id"] == 2 for e in events
        )

    await eventually(told)
    return handle


async def pick_up(handle: WorkflowHandle) -> Any:
    await handle.signal("picked_up")
    with anyio.fail_after(10):
        return await handle.result()


async def raw_markers(client: Client, workflow_id: str) -> list[dict[str, str]]:
    """The patch markers of a history as `redis-cli XRANGE` shows them."""
    entries: Any = await client.redis.xrange(client.keys.history(workflow_id))
    found = []
    for _, fields in entries:
        if fields[b"type"] == b"MarkerRecorded":
            names = ("marker_name", "patch_id", "deprecated")
            found.append({k: fields[k.encode()].decode() for k in names})
    return found


async def test_a_patch_deploy_against_in_flight_workflows(client: Client) -> None:
    async with deploy(client, PatchedOrderV1):
        old = [await start(client, f"old-{n}") for n in range(3)]

    async with deploy(client, PatchedOrderV2):
        new = [await start(client, f"new-{n}") for n in range(2)]
        # Started on the old code, past the patch: the new code replays them on the
        # old branch and carries them on to the end.
        for handle in old:
            assert await pick_up(handle) == PUSH
            assert await handle.query("get_channel") == "push"
            assert await raw_markers(client, handle.id) == []
            assert (await handle.describe()).last_workflow_task_failure is None
        # Started on the new code: the new branch, and the marker in history.
        for handle in new:
            assert await pick_up(handle) == SMS
            assert await raw_markers(client, handle.id) == [
                {"marker_name": "core_patch", "patch_id": "send-sms", "deprecated": "0"}
            ]
    # Closed histories are still queried by replay, each on its own branch.
    async with deploy(client, PatchedOrderV2):
        assert await old[0].query("get_channel") == "push"
        assert await new[0].query("get_channel") == "sms"


async def test_deprecate_then_remove_against_in_flight_workflows(client: Client) -> None:
    async with deploy(client, PatchedOrderV2):
        patched = await start(client, "patched")
    async with deploy(client, PatchedOrderV3):
        deprecated = await start(client, "deprecated")
        # The marker patched() wrote replays under deprecate_patch.
        assert await pick_up(patched) == SMS
    async with deploy(client, PatchedOrderV4):
        removed = await start(client, "removed")
        # A deprecated marker is skipped by code that no longer makes the call.
        assert await pick_up(deprecated) == SMS
        assert await pick_up(removed) == SMS
        assert (await deprecated.describe()).last_workflow_task_failure is None
    assert await raw_markers(client, "deprecated") == [
        {"marker_name": "core_patch", "patch_id": "send-sms", "deprecated": "1"}
    ]
    assert await raw_markers(client, "removed") == []


async def test_old_code_fails_the_task_of_a_patched_run_until_new_code_returns(
    client: Client,
) -> None:
    """A rollback to the old code while patched runs are open: their tasks fail with
    NondeterminismError (retried, nothing written), and the run goes on once a worker
    with the patch takes it again."""
    async with deploy(client, PatchedOrderV2):
        handle = await start(client, "rolled-back")
    before = [e.type async for e in handle.fetch_history()]
    async with deploy(client, PatchedOrderV1):
        await handle.signal("picked_up")

        async def failed() -> bool:
            return (await handle.describe()).last_workflow_task_failure is not None

        await eventually(failed)
        failure = (await handle.describe()).last_workflow_task_failure
        assert failure is not None
        assert failure["type"] == "NondeterminismError"
        assert "patch_id='send-sms'" in failure["message"]
    assert [e.type async for e in handle.fetch_history()] == [*before, "WorkflowExecutionSignaled"]
    async with deploy(client, PatchedOrderV2):
        with anyio.fail_after(10):
            assert await handle.result() == SMS
