"""Cancel and terminate end to end, on fakeredis and on a real server: cleanup on
cancel, each activity cancellation type, terminate."""

from __future__ import annotations

import anyio
import pytest

from sdk import (
    CancelledError,
    Client,
    TerminatedError,
    WorkflowFailureError,
    WorkflowNotRunningError,
)
from tests.integration.feature_workflows import (
    CALLS,
    CLEANUPS,
    CancelMe,
    CancelOneActivity,
    WaitForever,
    fresh_records,  # noqa: F401 (autouse)
    poked,
    worker,
)
from tests.integration.helpers import eventually

pytestmark = pytest.mark.anyio


# --- cancel and terminate -------------------------------------------------------------------


async def test_cancel_runs_cleanup_and_fails_result(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(CancelMe.run, id="cancel-1", task_queue="q")

        async def activity_started() -> bool:
            desc = await handle.describe()
            return any(p.state == "STARTED" for p in desc.pending_activities)

        await eventually(activity_started)
        await handle.cancel("changed my mind")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, CancelledError)
        assert CLEANUPS == ["cancelled"]
        desc = await handle.describe()
        assert desc.status == "CANCELED"
        assert desc.close_time is not None
        assert await handle.query(CancelMe.current) == "cancelled"
        types = [e.type async for e in handle.fetch_history()]
        assert "WorkflowExecutionCancelRequested" in types
        assert "ActivityTaskCanceled" in types
        assert types[-1] == "WorkflowExecutionCanceled"
        with pytest.raises(WorkflowNotRunningError):
            await handle.cancel()
    # The cancelled attempt learned it from its heartbeat and stopped early.
    assert len(CALLS["cancel-1"]) == 1


@pytest.mark.parametrize(
    "cancellation_type", [None, "TRY_CANCEL", "WAIT_CANCELLATION_COMPLETED", "ABANDON"]
)
async def test_cancelled_activity_raises_activity_error(
    client: Client, cancellation_type: str | None
) -> None:
    """As in Temporal: the await raises ActivityError(cause=CancelledError) and the
    workflow goes on (it used to raise asyncio.CancelledError, cancelling it whole)."""
    async with worker(client):
        wf_id = f"cancel-act-{cancellation_type}"
        handle = await client.start_workflow(
            CancelOneActivity.run, cancellation_type, id=wf_id, task_queue="q"
        )
        with anyio.fail_after(15):
            assert await handle.result() == {"cause": "CancelledError", "after": "after"}
        events = [e async for e in handle.fetch_history()]
    types = [e.type for e in events]
    ended = [e for e in events if e.type == "ActivityTaskFailed"]
    after = types.index("ActivityTaskScheduled", types.index("ActivityTaskScheduled") + 1)
    if cancellation_type == "ABANDON":
        assert "ActivityTaskCanceled" not in types  # never asked to stop
        assert not ended
    elif cancellation_type == "WAIT_CANCELLATION_COMPLETED":
        # The workflow went on only once the attempt's end was recorded.
        assert len(ended) == 1
        assert ended[0].attributes["failure"]["type"] == "CancelledError"
        assert types.index("ActivityTaskCanceled") < types.index("ActivityTaskFailed") < after
        assert len(CALLS[wf_id]) == 2  # the sleeper stopped; then echo
    else:
        # TRY_CANCEL: resolved at once, in the activation that asked to cancel.
        assert types[after - 1] == "ActivityTaskCanceled"
        assert not ended


async def test_terminate(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(WaitForever.run, id="term-1", task_queue="q")
        await handle.signal(WaitForever.poke)
        await eventually(lambda: poked(handle))
        await handle.terminate(reason="operator said so")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, TerminatedError)
        assert "operator said so" in str(info.value.cause)
        desc = await handle.describe()
        assert desc.status == "TERMINATED"
        events = [e async for e in handle.fetch_history()]
        assert events[-1].type == "WorkflowExecutionTerminated"
        assert events[-1].attributes["reason"] == "operator said so"
        with pytest.raises(WorkflowNotRunningError):
            await handle.signal(WaitForever.poke)
        with pytest.raises(WorkflowNotRunningError):
            await handle.terminate()
        # Queries still work on a terminated run (by replay).
        assert await handle.query(WaitForever.poked) == 1
