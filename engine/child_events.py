"""History events of child and external workflows (engine/children.py).

`seq` numbers a run's children (and, apart, its external signals and cancels) as
`activity_id` numbers its activities. The commands go to the other workflow's shard
through the outbox (docs/design-notes.md "Cross-shard hand-off"); the outcome comes
back the same way as an input event. engine/events.py re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.event_types import Event, without_empty_header


@dataclass(frozen=True)
class StartChildWorkflowExecutionInitiated(Event):
    is_command: ClassVar[bool] = True
    seq: int
    workflow_id: str
    workflow_type: str
    task_queue: str
    input: bytes
    #: The child's run id, chosen by the parent (deterministic on replay), which makes
    #: the hand-off that starts it idempotent.
    run_id: str
    parent_close_policy: str = "TERMINATE"
    #: id_reuse_policy, timeouts (ms): as a client's start takes them.
    options: dict[str, Any] = field(default_factory=dict)
    memo: bytes = b""


@dataclass(frozen=True)
class ChildWorkflowExecutionStarted(Event):
    seq: int
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class StartChildWorkflowExecutionFailed(Event):
    seq: int
    workflow_id: str
    #: Why: "WORKFLOW_ALREADY_EXISTS" (Temporal's cause), with the run that holds the id.
    cause: str
    run_id: str = ""


@dataclass(frozen=True)
class ChildWorkflowExecutionCompleted(Event):
    seq: int
    workflow_id: str
    run_id: str
    result: bytes


@dataclass(frozen=True)
class ChildWorkflowExecutionFailed(Event):
    seq: int
    workflow_id: str
    run_id: str
    failure: dict[str, Any]


@dataclass(frozen=True)
class ChildWorkflowExecutionCanceled(Event):
    seq: int
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class ChildWorkflowExecutionTerminated(Event):
    seq: int
    workflow_id: str
    run_id: str
    failure: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildWorkflowExecutionTimedOut(Event):
    seq: int
    workflow_id: str
    run_id: str
    failure: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignalExternalWorkflowExecutionInitiated(Event):
    is_command: ClassVar[bool] = True
    seq: int
    workflow_id: str
    signal_name: str
    input: bytes
    run_id: str = ""
    #: 1 when sent through a child's handle: only that child may receive it.
    child_workflow_only: int = 0
    #: Interceptors' headers, delivered with the signal ({}: none, not written).
    header: dict[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        return without_empty_header(super().attributes())


@dataclass(frozen=True)
class ExternalWorkflowExecutionSignaled(Event):
    seq: int
    workflow_id: str
    run_id: str = ""


@dataclass(frozen=True)
class SignalExternalWorkflowExecutionFailed(Event):
    seq: int
    workflow_id: str
    #: "EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND" (Temporal's cause) or why else.
    cause: str


@dataclass(frozen=True)
class RequestCancelExternalWorkflowExecutionInitiated(Event):
    is_command: ClassVar[bool] = True
    seq: int
    workflow_id: str
    run_id: str = ""
    child_workflow_only: int = 0


@dataclass(frozen=True)
class ExternalWorkflowExecutionCancelRequested(Event):
    seq: int
    workflow_id: str
    run_id: str = ""


@dataclass(frozen=True)
class RequestCancelExternalWorkflowExecutionFailed(Event):
    seq: int
    workflow_id: str
    cause: str


CHILD_CLOSE_TYPES = (
    ChildWorkflowExecutionCompleted,
    ChildWorkflowExecutionFailed,
    ChildWorkflowExecutionCanceled,
    ChildWorkflowExecutionTerminated,
    ChildWorkflowExecutionTimedOut,
)
