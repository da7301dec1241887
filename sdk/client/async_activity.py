"""Completing an activity from outside its worker: the handle that
`client.get_async_activity_handle()` returns, for an activity whose function ended with
`activity.raise_complete_async()`. Every call is fenced like a worker's completion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import (
    ActivityNotFoundError,
    AsyncActivityCancelledError,
    CancelledError,
    InvalidArgumentError,
    WorkflowNotFoundError,
    to_failure,
)
from engine.task_token import ActivityRef

if TYPE_CHECKING:
    from sdk.client.client import Client


class AsyncActivityHandle:
    """`complete`, `fail`, `heartbeat` and `report_cancellation` of one activity. Made
    from a task token, it acts on that attempt only; made from workflow, run and
    activity ids, on the activity's current attempt. An attempt that is not running
    any more raises ActivityNotFoundError, and nothing is applied."""

    def __init__(self, client: Client, ref: ActivityRef) -> None:
        self._client = client
        self._ref = ref

    async def _resolved(self) -> ActivityRef:
        """The ref with its run id: the workflow's current run when none was given
        (looked up once, so a later run's activity of the same id is never hit)."""
        if self._ref.run_id:
            return self._ref
        run_id = (await self._client.store.get_fields(self._ref.workflow_id, "run_id"))[0]
        if run_id is None:
            raise WorkflowNotFoundError(self._ref.workflow_id)
        self._ref = ActivityRef(
            self._ref.workflow_id, run_id.decode(), self._ref.activity_id, self._ref.attempt
        )
        return self._ref

    def _not_found(self, ref: ActivityRef) -> ActivityNotFoundError:
        attempt = "" if ref.attempt is None else f", attempt {ref.attempt}"
        return ActivityNotFoundError(
            f"activity {ref.activity_id} of workflow {ref.workflow_id!r} (run {ref.run_id}"
            f"{attempt}) is not running: it was completed, failed, timed out or retried, "
            "or its workflow closed"
        )

    async def _finish(self, *, result: bytes | None = None, failure: dict[str, Any] | None = None
                      ) -> None:
        ref = await self._resolved()
        if not await self._client.store.complete_activity_by_ref(
            ref, result=result, failure=failure
        ):
            raise self._not_found(ref)

    async def complete(self, result: Any = None) -> None:
        """The activity's result, as if its function had returned it."""
        await self._finish(result=self._client.codec.encode(result))

    async def fail(
        self, error: BaseException, *, last_heartbeat_details: Sequence[Any] = ()
    ) -> None:
        """The attempt failed with `error`: retried under the activity's retry policy
        (an ApplicationError with non_retryable=True is final), as a worker's failure.
        `last_heartbeat_details` reach the next attempt's `info().heartbeat_details`."""
        if not isinstance(error, BaseException):
            raise InvalidArgumentError("fail() takes an exception")
        if last_heartbeat_details:
            await self.heartbeat(*last_heartbeat_details)
        await self._finish(failure=to_failure(error))

    async def heartbeat(self, *details: Any) -> None:
        """Keep the heartbeat timeout from firing; details reach the next attempt.
        Raises AsyncActivityCancelledError when the workflow asked to cancel it."""
        ref = await self._resolved()
        payload = self._client.codec.encode(list(details)) if details else b""
        status = await self._client.store.heartbeat_activity_by_ref(ref, payload)
        if status == "cancel":
            raise AsyncActivityCancelledError(
                f"activity {ref.activity_id} of workflow {ref.workflow_id!r} was cancelled"
            )
        if status != "ok":
            raise self._not_found(ref)

    async def report_cancellation(self, *details: Any) -> None:
        """The activity stopped because it was cancelled: recorded as its cancellation
        (not retried)."""
        failure = to_failure(CancelledError("activity cancelled"), with_stack=False)
        failure["non_retryable"] = True
        if details:
            failure["details"] = [repr(d) for d in details]
        await self._finish(failure=failure)
