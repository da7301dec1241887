"""The replay machine's child and external workflow side: starting children, their
results, cancelling them, and signals and cancel requests sent to other workflows.

The machine only decides commands and applies the events that record their outcome;
the engine carries each command to the other workflow's shard and the outcome back
(engine/handoff.py, docs/design-notes.md "Cross-shard hand-off").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from engine import commands as cmd
from engine import events as ev
from engine.codec import PayloadCodec
from engine.errors import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    PayloadError,
    TerminatedError,
    WorkflowAlreadyStartedError,
    from_failure,
)

#: Temporal's cause of a start that found the child's id taken.
ALREADY_EXISTS = "WORKFLOW_ALREADY_EXISTS"


class ParentClosePolicy(IntEnum):
    """What happens to a running child when its parent's run closes (temporalio's names
    and numbers)."""

    UNSPECIFIED = 0
    #: The child is terminated (the default).
    TERMINATE = 1
    #: The child is asked to cancel; its code may clean up.
    REQUEST_CANCEL = 2
    #: The child runs on.
    ABANDON = 3


class CancelOwner(Protocol):
    def cancel_child(self, seq: int) -> bool: ...


class ChildResultFuture(asyncio.Future[Any]):
    """A child's result. Cancelling it (also what a cancelled task awaiting it does)
    asks the child to cancel and keeps waiting for how it ends, as temporalio's default
    ChildWorkflowCancellationType (WAIT_CANCELLATION_COMPLETED) does."""

    def __init__(self, owner: CancelOwner, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._owner = owner
        self._seq = seq

    def cancel(self, msg: Any | None = None) -> bool:
        if self.done():
            return False
        return self._owner.cancel_child(self._seq) or super().cancel(msg)


@dataclass(slots=True)
class PendingChild:
    seq: int
    workflow_id: str
    workflow_type: str
    #: The run the parent chose for it (the first run of its chain).
    run_id: str
    started: asyncio.Future[str]
    result: ChildResultFuture
    convert: Callable[[Any], Any] | None = None
    cancel_requested: bool = False


@dataclass(slots=True)
class _External:
    """A signal or cancel request sent to another workflow; `future` None: nobody waits
    (the cancel of a child, which waits on the child's result instead)."""

    workflow_id: str
    what: str
    future: asyncio.Future[None] | None = None


def _retrieved(future: asyncio.Future[Any], error: BaseException) -> None:
    future.set_exception(error)
    future.exception()  # code need not await it: no "exception never retrieved"


@dataclass(slots=True)
class _ChildState:
    children: dict[int, PendingChild] = field(default_factory=dict)
    externals: dict[int, _External] = field(default_factory=dict)
    child_seq: int = 0
    external_seq: int = 0


class ChildMixin:
    """Child workflows and external workflow handles, for WorkflowMachine."""

    codec: PayloadCodec
    loop: asyncio.AbstractEventLoop
    _commands: list[cmd.Command]
    _child_state: _ChildState

    if TYPE_CHECKING:

        def uuid4(self) -> uuid.UUID: ...  # WorkflowMachine's: deterministic on replay

    # --- called by workflow code (sdk/_child_workflows.py) ----------------------------
    def start_child(
        self,
        workflow_type: str,
        workflow_id: str,
        payload: bytes,
        task_queue: str,
        parent_close_policy: ParentClosePolicy,
        options: dict[str, Any],
        memo: bytes = b"",
        convert: Callable[[Any], Any] | None = None,
    ) -> PendingChild:
        state = self._child_state
        state.child_seq += 1
        seq = state.child_seq
        run_id = self.uuid4().hex
        policy = ParentClosePolicy(parent_close_policy)
        if policy == ParentClosePolicy.UNSPECIFIED:
            policy = ParentClosePolicy.TERMINATE
        self._commands.append(
            cmd.StartChildWorkflow(
                seq, workflow_id, workflow_type, task_queue, payload, run_id,
                policy.name, options, memo,
            )
        )
        child = PendingChild(
            seq, workflow_id, workflow_type, run_id, self.loop.create_future(),
            ChildResultFuture(self, seq, self.loop), convert,
        )
        state.children[seq] = child
        return child

    def cancel_child(self, seq: int) -> bool:
        child = self._child_state.children.get(seq)
        if child is None or child.cancel_requested:
            return True
        child.cancel_requested = True
        if child.started.done():
            self._request_child_cancel(child)
        # else: asked once the child has started (_on_child_started)
        return True

    def _request_child_cancel(self, child: PendingChild) -> None:
        self._send_cancel(child.workflow_id, child.run_id, child_only=True, waiter=None)

    def signal_external(
        self, workflow_id: str, run_id: str, signal_name: str, payload: bytes,
        child_only: bool = False, header: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        state = self._child_state
        state.external_seq += 1
        seq = state.external_seq
        self._commands.append(
            cmd.SignalExternalWorkflow(seq, workflow_id, signal_name, payload, run_id, child_only,
                                       header or {})
        )
        future: asyncio.Future[None] = self.loop.create_future()
        state.externals[seq] = _External(workflow_id, f"signal {signal_name!r}", future)
        return future

    def cancel_external(self, workflow_id: str, run_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self._send_cancel(workflow_id, run_id, child_only=False, waiter=future)
        return future

    def _send_cancel(
        self, workflow_id: str, run_id: str, *, child_only: bool,
        waiter: asyncio.Future[None] | None,
    ) -> None:
        state = self._child_state
        state.external_seq += 1
        seq = state.external_seq
        self._commands.append(
            cmd.RequestCancelExternalWorkflow(seq, workflow_id, run_id, child_only)
        )
        state.externals[seq] = _External(workflow_id, "cancel request", waiter)

    @property
    def pending_child_count(self) -> int:
        return len(self._child_state.children)

    # --- events -----------------------------------------------------------------------
    def _apply_child_event(self, event: ev.Event) -> None:
        match event:
            case ev.ChildWorkflowExecutionStarted():
                self._on_child_started(event)
            case ev.StartChildWorkflowExecutionFailed():
                self._on_child_start_failed(event)
            case ev.ChildWorkflowExecutionCompleted():
                self._on_child_completed(event)
            case ev.ChildWorkflowExecutionFailed() | ev.ChildWorkflowExecutionCanceled() | (
                ev.ChildWorkflowExecutionTerminated() | ev.ChildWorkflowExecutionTimedOut()
            ):
                self._on_child_closed(event)
            case ev.ExternalWorkflowExecutionSignaled() | (
                ev.ExternalWorkflowExecutionCancelRequested()
            ):
                self._on_external_done(event.seq, None)
            case ev.SignalExternalWorkflowExecutionFailed() | (
                ev.RequestCancelExternalWorkflowExecutionFailed()
            ):
                self._on_external_done(event.seq, event.cause)

    def _on_child_started(self, event: ev.ChildWorkflowExecutionStarted) -> None:
        child = self._child_state.children.get(event.seq)
        if child is None or child.started.done():
            return
        child.started.set_result(event.run_id)
        if child.cancel_requested:
            self._request_child_cancel(child)

    def _on_child_start_failed(self, event: ev.StartChildWorkflowExecutionFailed) -> None:
        child = self._child_state.children.pop(event.seq, None)
        if child is None:
            return
        error: FailureError
        if event.cause == ALREADY_EXISTS:
            error = WorkflowAlreadyStartedError(child.workflow_id, event.run_id)
        else:
            error = ApplicationError(
                f"child workflow {child.workflow_id!r} could not start: {event.cause}",
                type="StartChildWorkflowExecutionFailed",
                non_retryable=True,
            )
        if not child.started.done():
            child.started.set_exception(error)
        if not child.result.done():
            _retrieved(child.result, error)

    def _on_child_completed(self, event: ev.ChildWorkflowExecutionCompleted) -> None:
        child = self._pop_started(event.seq)
        if child is None or child.result.done():
            return
        try:
            value = self.codec.decode(event.result)
            if child.convert is not None:
                value = child.convert(value)
            child.result.set_result(value)
        except PayloadError as exc:
            child.result.set_exception(exc)

    def _on_child_closed(
        self,
        event: ev.ChildWorkflowExecutionFailed
        | ev.ChildWorkflowExecutionCanceled
        | ev.ChildWorkflowExecutionTerminated
        | ev.ChildWorkflowExecutionTimedOut,
    ) -> None:
        child = self._pop_started(event.seq)
        if child is None or child.result.done():
            return
        cause: FailureError
        match event:
            case ev.ChildWorkflowExecutionCanceled():
                cause, verb = CancelledError("child workflow canceled"), "canceled"
            case ev.ChildWorkflowExecutionTerminated():
                doc = event.failure
                cause = TerminatedError(str(doc.get("message", "terminated")))
                verb = "terminated"
            case ev.ChildWorkflowExecutionTimedOut():
                cause, verb = from_failure(event.failure), "timed out"
            case _:
                cause, verb = from_failure(event.failure), "failed"
        error = ChildWorkflowError(
            f"child workflow {child.workflow_type} ({child.workflow_id}) {verb}",
            workflow_id=child.workflow_id,
            run_id=event.run_id,
            workflow_type=child.workflow_type,
            cause=cause,
        )
        if child.cancel_requested:
            _retrieved(child.result, error)
        else:
            child.result.set_exception(error)

    def _pop_started(self, seq: int) -> PendingChild | None:
        child = self._child_state.children.pop(seq, None)
        if child is not None and not child.started.done():
            child.started.set_result(child.run_id)  # the engine records Started first
        return child

    def _on_external_done(self, seq: int, cause: str | None) -> None:
        external = self._child_state.externals.pop(seq, None)
        if external is None or external.future is None or external.future.done():
            return
        if cause is None:
            external.future.set_result(None)
            return
        external.future.set_exception(
            ApplicationError(
                f"{external.what} to workflow {external.workflow_id!r} failed: {cause}",
                type=cause,
                non_retryable=True,
            )
        )
