"""Async activity completion, on fakeredis and on a real server: completed, failed or
heartbeaten from another client by task token or by ids, stale tokens, timeouts and
cancellation of an activity completed elsewhere."""

from __future__ import annotations

import anyio
import pytest

from sdk import (
    ActivityCancellationType,
    ActivityError,
    ActivityNotFoundError,
    ApplicationError,
    AsyncActivityCancelledError,
    Client,
    InvalidArgumentError,
    workflow,
)
from tests.integration.activity_workflows import (
    RunOne,
    T,
    completes_later,
    fresh_records,  # noqa: F401 (autouse)
    other_client,
    run_one,
    token_of,
    worker,
)

pytestmark = pytest.mark.anyio


# --- async completion ---------------------------------------------------------------------


async def test_async_completion_from_another_client(client: Client, redis_url: str) -> None:
    async with worker(client), other_client(client, redis_url) as other:
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {}, id="async-1", task_queue="q"
        )
        token = await token_of("async-1")
        assert isinstance(token, bytes)
        await other.get_async_activity_handle(task_token=token).heartbeat("progress")
        await other.get_async_activity_handle(task_token=token).complete({"done": True})
        with anyio.fail_after(20):
            assert await handle.result() == {"result": {"done": True}}
        # The same token again: the attempt is over, nothing is applied.
        with pytest.raises(ActivityNotFoundError, match="not running"):
            await other.get_async_activity_handle(task_token=token).complete("twice")
        with pytest.raises(ActivityNotFoundError):
            await other.get_async_activity_handle(task_token=token).heartbeat()
        types = [e.type async for e in handle.fetch_history()]
    assert types.count("ActivityTaskCompleted") == 1


async def test_async_completion_of_a_sync_activity_by_ids(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later_sync", [], {}, id="async-ids", task_queue="q"
        )
        await token_of("async-ids")
        by_ids = client.get_async_activity_handle(workflow_id="async-ids", activity_id=1)
        await by_ids.complete("by ids")
        with anyio.fail_after(20):
            assert await handle.result() == {"result": "by ids"}


async def test_async_fail_is_retried_and_a_stale_token_is_rejected(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {"max_attempts": 2}, id="async-fail",
            task_queue="q",
        )
        first = await token_of("async-fail")
        await client.get_async_activity_handle(task_token=first).fail(
            ApplicationError("try again"), last_heartbeat_details=["cp"]
        )
        second = await token_of("async-fail", 2)
        assert second != first
        # Attempt 1 is over: its token completes nothing, even while attempt 2 runs.
        with pytest.raises(ActivityNotFoundError, match="attempt 1"):
            await client.get_async_activity_handle(task_token=first).complete("stale")
        await client.get_async_activity_handle(task_token=second).fail(
            ApplicationError("final", non_retryable=True)
        )
        with anyio.fail_after(20):
            out = await handle.result()
    assert out == {"cause": "ApplicationError", "attempt": 2, "message": "final",
                   "timeout_type": None}


async def test_async_activity_timeouts_keep_working(client: Client) -> None:
    # Heartbeats from the client keep it alive; then they stop and the timeout fires.
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {"heartbeat": 1500, "max_attempts": 1},
            id="async-hb", task_queue="q",
        )
        remote = client.get_async_activity_handle(task_token=await token_of("async-hb"))
        for _ in range(5):  # 0.5 s of heartbeats, each well within the timeout
            await remote.heartbeat()
            await anyio.sleep(0.1)
        with anyio.fail_after(20):
            out = await handle.result()
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "heartbeat"
    out = await run_one(client, "async-stc", "completes_later", "x", start_to_close=300,
                        max_attempts=1)
    assert out["timeout_type"] == "start_to_close"


async def test_async_report_cancellation_and_cancel_seen_by_heartbeat(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {}, id="async-cancel", task_queue="q"
        )
        remote = client.get_async_activity_handle(task_token=await token_of("async-cancel"))
        await remote.report_cancellation("stopped")
        with anyio.fail_after(20):
            out = await handle.result()
    assert out["cause"] == "CancelledError"


async def test_async_handle_bad_input(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="not a task token"):
        client.get_async_activity_handle(task_token=b"\x93garbage")
    with pytest.raises(InvalidArgumentError):
        client.get_async_activity_handle(workflow_id="w")
    with pytest.raises(InvalidArgumentError):
        client.get_async_activity_handle(task_token=b"x", workflow_id="w", activity_id=1)
    with pytest.raises(InvalidArgumentError, match="not a number"):
        client.get_async_activity_handle(workflow_id="w", activity_id="one")
    with pytest.raises(InvalidArgumentError):
        client.get_async_activity_handle(workflow_id="bad{id}", activity_id=1)


async def test_async_heartbeat_of_a_cancelled_activity_raises(client: Client) -> None:
    @workflow.defn(name="CancelAsync")
    class CancelAsync:
        @workflow.run
        async def run(self) -> str:
            fut = workflow.start_activity(
                completes_later, "x", start_to_close_timeout=T,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            await workflow.sleep(0.2)
            fut.cancel()
            try:
                await fut
            except ActivityError as err:
                return type(err.cause).__name__
            return "completed"

    async with worker(client, workflows=[CancelAsync]):
        handle = await client.start_workflow(CancelAsync.run, id="async-c2", task_queue="q")
        remote = client.get_async_activity_handle(task_token=await token_of("async-c2"))
        with anyio.fail_after(10):
            while True:
                try:
                    await remote.heartbeat()
                except AsyncActivityCancelledError:
                    break
                await anyio.sleep(0.05)
        await remote.report_cancellation()
        with anyio.fail_after(20):
            assert await handle.result() == "CancelledError"
