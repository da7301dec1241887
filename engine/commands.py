"""Commands: what workflow code decides in one activation. Each one becomes exactly one
history event, written by the workflow-task completion function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine import events as ev


@dataclass(frozen=True)
class ScheduleActivity:
    seq: int
    activity_type: str
    input: bytes
    task_queue: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestCancelActivity:
    seq: int


@dataclass(frozen=True)
class StartTimer:
    seq: int
    duration_ms: int


@dataclass(frozen=True)
class CancelTimer:
    seq: int


@dataclass(frozen=True)
class CompleteWorkflow:
    result: bytes


@dataclass(frozen=True)
class FailWorkflow:
    failure: dict[str, Any]


@dataclass(frozen=True)
class CancelWorkflow:
    pass


@dataclass(frozen=True)
class ContinueAsNew:
    input: bytes
    new_run_id: str
    #: What the next run changes ("" / b"": keep this run's).
    memo: bytes = b""
    task_queue: str = ""
    workflow_type: str = ""


@dataclass(frozen=True)
class SetPatchMarker:
    """workflow.patched / deprecate_patch took the new branch: record a patch marker
    (temporalio's `set_patch_marker` command)."""

    patch_id: str
    deprecated: bool = False


@dataclass(frozen=True)
class RecordLocalActivityMarker:
    """A local activity ended (in the worker, within this workflow task): record its
    outcome as a marker, which replay resolves the activity from. `failure` is None
    when it returned `result`."""

    seq: int
    activity_type: str
    attempt: int
    result: bytes = b""
    failure: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpsertSearchAttributes:
    """workflow.upsert_search_attributes (temporalio's command of the same purpose):
    the changed attributes in wire form (engine/search_attributes.py)."""

    search_attributes: dict[str, Any]


@dataclass(frozen=True)
class RecordSignalDropped:
    """Not a decision but a note: a signal the workflow could not take (its input does
    not decode, its arguments do not fit the handler, or no handler has its name) was
    dropped, and the workflow went on. Written on the activation's boundary event and
    the run's state (`last_signal_dropped`) so that describe and show tell why; never
    an event of its own, so replay has nothing to match."""

    event_id: int
    signal_name: str
    reason: str


@dataclass(frozen=True)
class AcceptUpdate:
    """An update's validator passed: recorded as WorkflowExecutionUpdateAccepted."""

    update_id: str
    name: str
    input: bytes


@dataclass(frozen=True)
class CompleteUpdate:
    """An update's handler ended: `failure` None when it returned `result`."""

    update_id: str
    result: bytes = b""
    failure: dict[str, Any] | None = None


@dataclass(frozen=True)
class RejectUpdate:
    """Not an event: the validator (or the lack of a handler) refused the update. The
    completion stores the outcome with the update's state only, so a rejection writes
    nothing to history (as Temporal's); replay never sees it."""

    update_id: str
    failure: dict[str, Any]


@dataclass(frozen=True)
class StartChildWorkflow:
    """Start a child workflow (engine/children.py); `run_id` is chosen by the parent."""

    seq: int
    workflow_id: str
    workflow_type: str
    task_queue: str
    input: bytes
    run_id: str
    parent_close_policy: str = "TERMINATE"
    options: dict[str, Any] = field(default_factory=dict)
    memo: bytes = b""


@dataclass(frozen=True)
class SignalExternalWorkflow:
    seq: int
    workflow_id: str
    signal_name: str
    input: bytes
    run_id: str = ""
    child_workflow_only: bool = False
    #: Interceptors' headers, delivered with the signal (sdk/interceptor.py).
    header: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class RequestCancelExternalWorkflow:
    seq: int
    workflow_id: str
    run_id: str = ""
    child_workflow_only: bool = False


Command = (
    ScheduleActivity
    | RequestCancelActivity
    | StartTimer
    | CancelTimer
    | CompleteWorkflow
    | FailWorkflow
    | CancelWorkflow
    | ContinueAsNew
    | SetPatchMarker
    | RecordLocalActivityMarker
    | UpsertSearchAttributes
    | RecordSignalDropped
    | AcceptUpdate
    | CompleteUpdate
    | RejectUpdate
    | StartChildWorkflow
    | SignalExternalWorkflow
    | RequestCancelExternalWorkflow
)

#: Commands that are notes about the activation rather than history events (a rejected
#: update is passed to the completion on its own: engine.updates.rejection_args).
NOTE_COMMANDS = (RecordSignalDropped, RejectUpdate)

CLOSE_COMMANDS = (CompleteWorkflow, FailWorkflow, CancelWorkflow, ContinueAsNew)


def to_event(command: Command) -> tuple[type[ev.Event], dict[str, Any]]:
    """The event type and attributes that record a command in history."""
    match command:
        case ScheduleActivity(seq, activity_type, payload, task_queue, options):
            return ev.ActivityTaskScheduled, {
                "activity_id": seq,
                "activity_type": activity_type,
                "input": payload,
                "task_queue": task_queue,
                "options": options,
            }
        case RequestCancelActivity(seq):
            return ev.ActivityTaskCanceled, {"activity_id": seq}
        case StartTimer(seq, duration_ms):
            return ev.TimerStarted, {"timer_id": seq, "duration_ms": duration_ms}
        case CancelTimer(seq):
            return ev.TimerCanceled, {"timer_id": seq}
        case CompleteWorkflow(result):
            return ev.WorkflowExecutionCompleted, {"result": result}
        case FailWorkflow(failure):
            return ev.WorkflowExecutionFailed, {"failure": failure}
        case CancelWorkflow():
            return ev.WorkflowExecutionCanceled, {}
        case ContinueAsNew(payload, new_run_id, memo, task_queue, workflow_type):
            changes = {"memo": memo, "task_queue": task_queue, "workflow_type": workflow_type}
            return ev.WorkflowExecutionContinuedAsNew, {
                "input": payload, "new_run_id": new_run_id,
                **{name: value for name, value in changes.items() if value},
            }
        case SetPatchMarker(patch_id, deprecated):
            return ev.MarkerRecorded, {
                "marker_name": ev.PATCH_MARKER_NAME,
                "patch_id": patch_id,
                "deprecated": int(deprecated),
            }
        case RecordLocalActivityMarker(seq, activity_type, attempt, result, failure):
            attrs: dict[str, Any] = {
                "marker_name": ev.LOCAL_ACTIVITY_MARKER_NAME,
                "activity_id": seq,
                "activity_type": activity_type,
                "attempt": attempt,
            }
            if failure is None:
                attrs["result"] = result
            else:
                attrs["failure"] = failure
            return ev.MarkerRecorded, attrs
        case AcceptUpdate(update_id, name, payload):
            return ev.WorkflowExecutionUpdateAccepted, {
                "update_id": update_id, "name": name, "input": payload}
        case CompleteUpdate(update_id, result, failure):
            if failure is None:
                return ev.WorkflowExecutionUpdateCompleted, {
                    "update_id": update_id, "result": result}
            return ev.WorkflowExecutionUpdateCompleted, {
                "update_id": update_id, "failure": failure}
        case UpsertSearchAttributes(search_attributes):
            return ev.UpsertWorkflowSearchAttributes, {"search_attributes": search_attributes}
        case StartChildWorkflow():
            return ev.StartChildWorkflowExecutionInitiated, {
                "seq": command.seq,
                "workflow_id": command.workflow_id,
                "workflow_type": command.workflow_type,
                "task_queue": command.task_queue,
                "input": command.input,
                "run_id": command.run_id,
                "parent_close_policy": command.parent_close_policy,
                "options": command.options,
                "memo": command.memo,
            }
        case SignalExternalWorkflow():
            return ev.SignalExternalWorkflowExecutionInitiated, {
                "seq": command.seq,
                "workflow_id": command.workflow_id,
                "signal_name": command.signal_name,
                "input": command.input,
                "run_id": command.run_id,
                "child_workflow_only": int(command.child_workflow_only),
                **({"header": command.header} if command.header else {}),
            }
        case RequestCancelExternalWorkflow():
            return ev.RequestCancelExternalWorkflowExecutionInitiated, {
                "seq": command.seq,
                "workflow_id": command.workflow_id,
                "run_id": command.run_id,
                "child_workflow_only": int(command.child_workflow_only),
            }
        case RecordSignalDropped() | RejectUpdate():
            raise TypeError("a note is written with the completion, not as an event")
    raise TypeError(f"unknown command {command!r}")


def matches(command: Command, event: ev.Event) -> bool:
    """Does a recorded command event stand for this command? Payloads are not compared
    (like Temporal): changing an argument is not a change of decisions."""
    match command, event:
        case ScheduleActivity(seq=seq, activity_type=t), ev.ActivityTaskScheduled():
            return event.activity_id == seq and event.activity_type == t
        case RequestCancelActivity(seq=seq), ev.ActivityTaskCanceled():
            return event.activity_id == seq
        case StartTimer(seq=seq), ev.TimerStarted():
            return event.timer_id == seq
        case CancelTimer(seq=seq), ev.TimerCanceled():
            return event.timer_id == seq
        case CompleteWorkflow(), ev.WorkflowExecutionCompleted():
            return True
        case FailWorkflow(), ev.WorkflowExecutionFailed():
            return True
        case CancelWorkflow(), ev.WorkflowExecutionCanceled():
            return True
        case ContinueAsNew(), ev.WorkflowExecutionContinuedAsNew():
            return True
        case SetPatchMarker(patch_id=patch_id), ev.MarkerRecorded():
            # Deprecated or not does not matter (as in Temporal): deprecate_patch
            # replays a marker that patched recorded, and the other way round.
            return event.marker_name == ev.PATCH_MARKER_NAME and event.patch_id == patch_id
        case AcceptUpdate(update_id=uid), ev.WorkflowExecutionUpdateAccepted():
            return event.update_id == uid
        case CompleteUpdate(update_id=uid), ev.WorkflowExecutionUpdateCompleted():
            return event.update_id == uid
        case UpsertSearchAttributes(), ev.UpsertWorkflowSearchAttributes():
            return True  # by kind only, as Temporal matches it
        case RecordLocalActivityMarker(seq=seq, activity_type=t), ev.MarkerRecorded():
            return (
                event.marker_name == ev.LOCAL_ACTIVITY_MARKER_NAME
                and event.activity_id == seq
                and event.activity_type == t
            )
        case StartChildWorkflow(seq=seq, workflow_type=t), (
            ev.StartChildWorkflowExecutionInitiated()
        ):
            return event.seq == seq and event.workflow_type == t
        case SignalExternalWorkflow(seq=seq, signal_name=name), (
            ev.SignalExternalWorkflowExecutionInitiated()
        ):
            return event.seq == seq and event.signal_name == name
        case RequestCancelExternalWorkflow(seq=seq), (
            ev.RequestCancelExternalWorkflowExecutionInitiated()
        ):
            return event.seq == seq
    return False


def dropped_signals_note(commands: list[Command]) -> str:
    """The boundary's `signals_dropped` text for the notes among `commands` ("" if none)."""
    notes = [
        f"event {c.event_id}: signal {c.signal_name!r} dropped: {c.reason}"
        for c in commands
        if isinstance(c, RecordSignalDropped)
    ]
    return "; ".join(notes)[:MAX_NOTE_CHARS]


#: A note is for people reading describe/show: a storm of drops keeps its beginning.
MAX_NOTE_CHARS = 2000


def describe(command: Command) -> str:
    """Short human form for error messages."""
    match command:
        case ScheduleActivity(seq=seq, activity_type=t):
            return f"ScheduleActivity(activity_id={seq}, activity_type={t!r})"
        case StartTimer(seq=seq, duration_ms=ms):
            return f"StartTimer(timer_id={seq}, duration_ms={ms})"
        case SetPatchMarker(patch_id=patch_id, deprecated=deprecated):
            return f"SetPatchMarker(patch_id={patch_id!r}, deprecated={deprecated})"
        case RecordLocalActivityMarker(seq=seq, activity_type=t):
            return f"RecordLocalActivityMarker(activity_id={seq}, activity_type={t!r})"
        case AcceptUpdate(update_id=uid, name=name):
            return f"AcceptUpdate(update_id={uid!r}, name={name!r})"
        case CompleteUpdate(update_id=uid):
            return f"CompleteUpdate(update_id={uid!r})"
        case StartChildWorkflow(seq=seq, workflow_type=t, workflow_id=wid):
            return f"StartChildWorkflow(seq={seq}, workflow_type={t!r}, workflow_id={wid!r})"
        case SignalExternalWorkflow(seq=seq, signal_name=name, workflow_id=wid):
            return f"SignalExternalWorkflow(seq={seq}, signal_name={name!r}, workflow_id={wid!r})"
        case RequestCancelExternalWorkflow(seq=seq, workflow_id=wid):
            return f"RequestCancelExternalWorkflow(seq={seq}, workflow_id={wid!r})"
        case _:
            return type(command).__name__
