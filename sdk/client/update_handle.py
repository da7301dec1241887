"""Workflow updates from the client (temporalio's shapes): `WorkflowHandle.execute_update`,
`start_update` and `get_workflow_update_handle` are written here and bound onto the
handle, and `WorkflowUpdateHandle` waits for an update's outcome.

No polling: each client keeps one subscription to its shards' update channels (a
`CloseWatcher` on other channels); a waiter registers for its update and for its
workflow's close, then reads the update's state, and waits for either message before
it reads again (docs/design-notes.md "Updates")."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from redis.asyncio import Redis

from engine.errors import (
    ApplicationError,
    InvalidArgumentError,
    RedurableError,
    WorkflowNotRunningError,
    WorkflowUpdateFailedError,
    from_failure,
)
from engine.keys import Keys
from engine.reconnect import RetryConfig
from engine.status import WorkflowExecutionStatus
from engine.update_calls import admit_update, read_update
from engine.updates import UpdateState, WorkflowUpdateStage
from engine.validate import check_id
from sdk import _interception as interception
from sdk._definitions import update_name
from sdk._payload_hints import PayloadHints, hints_of, untyped, with_result
from sdk.client.close_watch import CloseWatcher
from sdk.interceptor import StartWorkflowUpdateInput

if TYPE_CHECKING:
    from sdk.client.client import Client
    from sdk.client.handle import WorkflowHandle

_R = TypeVar("_R")

#: Temporal's failure for an update whose workflow closed before its handler ended.
CLOSED_BEFORE_COMPLETED = (
    "Workflow Update failed because the Workflow completed before the Update completed."
)
#: A waiter reads the state again after this long without a message (a message lost
#: with a connection is not replayed; the watcher also wakes everyone when it resubscribes).
_RECHECK_S = 30.0


def update_watcher(redis: Redis, keys: Keys, retry: RetryConfig) -> CloseWatcher:
    """The client's one subscription to update announcements ("<workflow id>\\n<update id>")."""
    return CloseWatcher(redis, keys, retry,
                        channels=[keys.updates_channel(s) for s in range(keys.shards)])


class WorkflowUpdateHandle(Generic[_R]):
    """An update of one workflow by id (temporalio's `WorkflowUpdateHandle`)."""

    def __init__(
        self,
        client: Client,
        update_id: str,
        workflow_id: str,
        *,
        workflow_run_id: str | None = None,
        name: str = "",
        hints: PayloadHints | None = None,
        known: UpdateState | None = None,
    ) -> None:
        self._client = client
        self._id = update_id
        self._workflow_id = workflow_id
        self._workflow_run_id = workflow_run_id
        self._name = name
        self._hints = hints or untyped(name or update_id)
        self._known = known

    @property
    def id(self) -> str:
        return self._id

    @property
    def workflow_id(self) -> str:
        return self._workflow_id

    @property
    def workflow_run_id(self) -> str | None:
        return self._workflow_run_id

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"WorkflowUpdateHandle(id={self._id!r}, workflow_id={self._workflow_id!r})"

    async def result(self, *, timeout: float | None = None) -> _R:
        """Wait for the update's outcome and return its handler's result; raises
        WorkflowUpdateFailedError when it was rejected, failed, or its run closed first,
        and RedurableError for an id the workflow never had."""
        wait = wait_for_stage(self._client, self._workflow_id, self._id,
                              WorkflowUpdateStage.COMPLETED, self._known)
        state = await (asyncio.wait_for(wait, timeout) if timeout else wait)
        self._known = state
        return outcome(self._client, state, self._workflow_id, self._id, self._hints)  # type: ignore[no-any-return]


def outcome(
    client: Client, state: UpdateState, workflow_id: str, update_id: str, hints: PayloadHints
) -> Any:
    """The result of a completed update, or the error its outcome stands for."""
    what = f"update {update_id!r} of workflow {workflow_id!r}"
    if state.stage is WorkflowUpdateStage.COMPLETED:
        if state.outcome == "success":
            return hints.decode_result(client.codec.decode(state.value))
        verb = "was rejected" if state.outcome == "rejected" else "failed"
        raise WorkflowUpdateFailedError(f"{what} {verb}", cause=from_failure(state.failure))
    # Not completed and its run is gone: accepted, the handler never ended (Temporal's
    # AcceptedUpdateCompletedWorkflow); admitted, no workflow task ever took it.
    if state.stage is WorkflowUpdateStage.ACCEPTED:
        raise WorkflowUpdateFailedError(
            f"{what} failed", cause=ApplicationError(
                CLOSED_BEFORE_COMPLETED, type="AcceptedUpdateCompletedWorkflow",
                non_retryable=True))
    status = (WorkflowExecutionStatus.parse(state.run_status)
              if state.current_run_id == state.run_id else
              WorkflowExecutionStatus.CONTINUED_AS_NEW)
    raise WorkflowNotRunningError(workflow_id, status)


async def wait_for_stage(
    client: Client,
    workflow_id: str,
    update_id: str,
    stage: WorkflowUpdateStage,
    known: UpdateState | None = None,
) -> UpdateState:
    """The update's state once it reached `stage` (or its run closed first)."""
    if known is not None and (known.stage >= stage or known.run_closed):
        return known
    updates, closes = client.update_watcher, client.close_watcher
    key = f"{workflow_id}\n{update_id}"
    while True:
        # Subscribe first, then look: a message between the two still wakes us.
        announced = await updates.register(key)
        closed = await closes.register(workflow_id)
        try:
            state = await client.retrier.retry(
                f"state of update {update_id!r}",
                lambda: read_update(client.store, workflow_id, update_id))
            if state is None:
                raise RedurableError(
                    f"workflow {workflow_id!r} has no update with id {update_id!r}")
            if state.stage >= stage or state.run_closed:
                return state
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.wait({announced, closed}, return_when=asyncio.FIRST_COMPLETED),
                    _RECHECK_S)
        finally:
            updates.unregister(key, announced)
            closes.unregister(workflow_id, closed)


async def start_update(
    handle: WorkflowHandle,
    update: Callable[..., Any] | str,
    *arguments: Any,
    wait_for_stage: WorkflowUpdateStage,
    id: str | None = None,
    result_type: Any = None,
    args: Sequence[Any] | None = None,
) -> WorkflowUpdateHandle[Any]:
    """Send an update and return its handle once it reached `wait_for_stage` (ACCEPTED
    or COMPLETED; temporalio refuses ADMITTED, and so do we). `id`: the update id, a
    uuid4 by default; the same id again is applied once and answers the same outcome.
    The arguments go positionally, or as `args=[...]` (temporalio's form), not both."""
    if args is not None:
        if arguments:
            raise InvalidArgumentError("give the update's arguments positionally or as args=")
        arguments = tuple(args)
    if wait_for_stage not in (WorkflowUpdateStage.ACCEPTED, WorkflowUpdateStage.COMPLETED):
        raise ValueError("wait_for_stage must be WorkflowUpdateStage.ACCEPTED or COMPLETED")
    name = update_name(update)
    if chain := interception.intercepting(handle.client.outbound_interceptor):
        return await chain.start_workflow_update(StartWorkflowUpdateInput(
            id=handle.id, run_id=handle.run_id, update_id=id, update=name,
            args=list(arguments), wait_for_stage=wait_for_stage, ret_type=result_type,
            update_ref=update))
    hints = with_result(
        untyped(name) if isinstance(update, str) else hints_of(update, method=True),
        result_type)
    update_id = check_id(id, "update id") if id is not None else str(uuid.uuid4())
    client = handle.client
    payload = client.codec.encode(hints.encode_args(arguments))
    state = await client.retrier.retry(
        f"update {name!r} of workflow {handle.id!r}",
        lambda: admit_update(client.store, handle.id, handle.run_id or "", update_id, name,
                             payload))
    state = await _wait(client, handle.id, update_id, wait_for_stage, state)
    update_handle: WorkflowUpdateHandle[Any] = WorkflowUpdateHandle(
        client, update_id, handle.id, workflow_run_id=state.run_id, name=name, hints=hints,
        known=state)
    if state.stage < wait_for_stage or state.outcome == "rejected":
        # Rejected, or its run closed first: the caller hears it now, as from Temporal.
        outcome(client, state, handle.id, update_id, hints)
    return update_handle


async def _wait(
    client: Client, workflow_id: str, update_id: str, stage: WorkflowUpdateStage,
    state: UpdateState,
) -> UpdateState:
    if state.stage >= stage:
        return state
    return await wait_for_stage(client, workflow_id, update_id, stage)


async def execute_update(
    handle: WorkflowHandle,
    update: Callable[..., Any] | str,
    *arguments: Any,
    id: str | None = None,
    result_type: Any = None,
    args: Sequence[Any] | None = None,
) -> Any:
    """Send an update and wait for its result (start_update, then result())."""
    update_handle = await start_update(
        handle, update, *arguments, wait_for_stage=WorkflowUpdateStage.COMPLETED, id=id,
        result_type=result_type, args=args)
    return await update_handle.result()


def get_workflow_update_handle(
    handle: WorkflowHandle, update_id: str, *, result_type: Any = None
) -> WorkflowUpdateHandle[Any]:
    """A handle to an update sent before (by this client or another)."""
    return WorkflowUpdateHandle(
        handle.client, update_id, handle.id, workflow_run_id=handle.run_id,
        hints=with_result(untyped(update_id), result_type))
