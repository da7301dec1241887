"""History event types: the frozen dataclasses a workflow's history is made of.

The events of child and external workflows are in engine/child_events.py; the registry
of all types and their stream-entry form are in engine/events.py, which re-exports every
name here (import them from there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar


class WorkflowLogicFlag(IntEnum):
    """Replay behaviour flags (temporalio's `_WorkflowLogicFlag`). Each activation
    records the flags it ran with in its WorkflowTaskCompleted event, and replay honours
    what was recorded, so histories written before a behaviour changed still replay the
    way they ran. The numbers are in recorded histories (tests/golden): never reuse one."""

    #: Inputs are applied one at a time, the workflow running until it waits again
    #: after each one (before: all inputs applied, then one run). So a signal recorded
    #: before a timer's fire in the same activation is seen before the timeout.
    STEP_PER_INPUT = 1
    #: WorkflowTaskCompleted records `close_dropped`: a close command with no close
    #: event is accepted only there (before: anywhere, so code changed to close
    #: earlier went undetected).
    CLOSE_DROP_RECORDED = 2
    #: Cancelling an activity's future resolves it with ActivityError(cause=
    #: CancelledError), as its cancellation type says (before: the future was
    #: cancelled, its await raised asyncio.CancelledError, and code catching
    #: ActivityError was cancelled as a whole); an uncaught such error after a
    #: cancel request cancels the workflow.
    ACTIVITY_CANCEL_AS_ERROR = 3


def without_empty_header(attrs: dict[str, Any]) -> dict[str, Any]:
    """Events without headers are written (and shown) as before headers existed."""
    if not attrs.get("header"):
        attrs.pop("header", None)
    return attrs


def encode_logic_flags(flags: Iterable[WorkflowLogicFlag]) -> str:
    """The flags as WorkflowTaskCompleted records them: "1,2"."""
    return ",".join(str(flag.value) for flag in sorted(flags))


@dataclass(frozen=True)
class Event:
    event_id: int
    timestamp: int  # ms since the epoch, Redis server time
    #: True for events that record a command of the workflow code (matched on replay).
    is_command: ClassVar[bool] = False

    @property
    def type(self) -> str:
        return type(self).__name__

    def attributes(self) -> dict[str, Any]:
        """Event-specific attributes (raw: payloads stay bytes)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("event_id", "timestamp")
        }


# --- inputs: things that happened to the workflow ------------------------------------


@dataclass(frozen=True)
class WorkflowExecutionStarted(Event):
    workflow_type: str
    task_queue: str
    input: bytes
    run_id: str
    attempt: int = 1
    #: Version of replay behaviour this run was started with (see docs/replay.md).
    history_version: int = 1
    #: Start options the run keeps (engine/run_info.py): the run chain's first run and
    #: the run this one continues ("" none), the memo payload (b"" none), and the
    #: timeouts in ms (0 none).
    first_execution_run_id: str = ""
    continued_run_id: str = ""
    memo: bytes = b""
    execution_timeout_ms: int = 0
    run_timeout_ms: int = 0
    task_timeout_ms: int = 0
    #: Search attributes the run started with (wire form, engine/search_attributes.py).
    search_attributes: dict[str, Any] = field(default_factory=dict)
    #: Headers of the start (interceptors: sdk/interceptor.py), {} none.
    header: dict[str, Any] = field(default_factory=dict)
    #: Run chains (engine/run_chain.py): the cron schedule ("" none), and how long the
    #: first workflow task waited (a cron run waits for its cron time; 0 none).
    cron_schedule: str = ""
    first_workflow_task_backoff_ms: int = 0
    #: A child workflow's parent (temporalio's `workflow.info().parent`), "" none.
    parent_workflow_id: str = ""
    parent_run_id: str = ""

    def attributes(self) -> dict[str, Any]:
        attrs = super().attributes()
        if not self.search_attributes:
            del attrs["search_attributes"]  # as written before search attributes existed
        return without_empty_header(attrs)


@dataclass(frozen=True)
class ActivityTaskCompleted(Event):
    activity_id: int
    result: bytes
    attempt: int


@dataclass(frozen=True)
class ActivityTaskFailed(Event):
    activity_id: int
    failure: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class ActivityTaskTimedOut(Event):
    activity_id: int
    failure: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class TimerFired(Event):
    timer_id: int


@dataclass(frozen=True)
class WorkflowExecutionSignaled(Event):
    signal_name: str
    input: bytes
    #: Headers of the signal (interceptors: sdk/interceptor.py), {} none.
    header: dict[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        return without_empty_header(super().attributes())


@dataclass(frozen=True)
class WorkflowExecutionCancelRequested(Event):
    reason: str = ""


# --- the boundary between activations -------------------------------------------------


@dataclass(frozen=True)
class WorkflowTaskCompleted(Event):
    """Ends an activation: the events before it were the activation's inputs, the
    command events after it are what the workflow code decided."""

    worker: str = ""
    #: Workflow time of the activation (ms), replayed as `workflow.now()`.
    now: int = 0
    #: Comma-separated replay behaviour flags used by this activation (logic_flags).
    flags: str = ""
    #: 1 when the activation's close command was not written because events had
    #: arrived meanwhile (the next activation decides again).
    close_dropped: int = 0
    #: Signals of this activation's inputs that the workflow could not take, and why
    #: (engine.commands.RecordSignalDropped); "" when none. Not replayed.
    signals_dropped: str = ""

    @property
    def logic_flags(self) -> frozenset[WorkflowLogicFlag]:
        """The recorded flags this code knows (a number it does not know changes
        nothing it does)."""
        recorded = self.flags.split(",")
        return frozenset(flag for flag in WorkflowLogicFlag if str(flag.value) in recorded)


# --- commands: what the workflow code decided -----------------------------------------


@dataclass(frozen=True)
class ActivityTaskScheduled(Event):
    is_command: ClassVar[bool] = True
    activity_id: int
    activity_type: str
    input: bytes
    task_queue: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityTaskCanceled(Event):
    is_command: ClassVar[bool] = True
    activity_id: int


@dataclass(frozen=True)
class TimerStarted(Event):
    is_command: ClassVar[bool] = True
    timer_id: int
    duration_ms: int


@dataclass(frozen=True)
class TimerCanceled(Event):
    is_command: ClassVar[bool] = True
    timer_id: int


@dataclass(frozen=True)
class WorkflowExecutionCompleted(Event):
    is_command: ClassVar[bool] = True
    result: bytes


@dataclass(frozen=True)
class WorkflowExecutionFailed(Event):
    is_command: ClassVar[bool] = True
    failure: dict[str, Any]


@dataclass(frozen=True)
class WorkflowExecutionCanceled(Event):
    is_command: ClassVar[bool] = True


@dataclass(frozen=True)
class WorkflowExecutionContinuedAsNew(Event):
    is_command: ClassVar[bool] = True
    new_run_id: str
    input: bytes
    #: What the next run changes (workflow.continue_as_new(memo=, task_queue=,
    #: workflow=)); empty: the same as this run's.
    memo: bytes = b""
    task_queue: str = ""
    workflow_type: str = ""

    def attributes(self) -> dict[str, Any]:
        """Only the changes given, so the stream form without any is what it was."""
        return {k: v for k, v in super().attributes().items() if v not in ("", b"")}


#: `marker_name` of the markers `workflow.patched` / `deprecate_patch` record (Temporal's).
PATCH_MARKER_NAME = "core_patch"
#: `marker_name` of the markers that record a local activity's outcome (Temporal's).
LOCAL_ACTIVITY_MARKER_NAME = "core_local_activity"


@dataclass(frozen=True)
class MarkerRecorded(Event):
    """A marker the workflow code recorded, of one of two kinds:

    - a patch marker (`marker_name` "core_patch"): workflow.patched(patch_id) took the
      new branch here. `deprecated` is 1 when workflow.deprecate_patch recorded it:
      replay by code that no longer asks for the patch then skips it (docs/versioning.md);
    - a local activity's outcome (`marker_name` "core_local_activity", as temporalio
      names it): `activity_id` (the local activity's sequence number in the run),
      `activity_type`, the `attempt` it ended on, and its `result` or its `failure`.
      Replay reads the outcome from here instead of running the function again.
    """

    is_command: ClassVar[bool] = True
    marker_name: str
    patch_id: str = ""
    deprecated: int = 0
    activity_id: int = 0
    activity_type: str = ""
    attempt: int = 0
    result: bytes = b""
    failure: dict[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        """Only the fields of this marker's kind, as the engine writes them (a patch
        marker's stream form is what it was before local activities existed)."""
        attrs = super().attributes()
        if self.marker_name == PATCH_MARKER_NAME:
            keep = {"marker_name", "patch_id", "deprecated"}
        elif self.marker_name == LOCAL_ACTIVITY_MARKER_NAME:
            keep = {"marker_name", "activity_id", "activity_type", "attempt"}
            keep.add("failure" if self.failure else "result")
        else:
            return attrs
        return {k: v for k, v in attrs.items() if k in keep}


# --- updates (engine/updates.py) ------------------------------------------------------


@dataclass(frozen=True)
class WorkflowExecutionUpdateAdmitted(Event):
    """Never in a history: an update request as the workflow task it queued carries it
    (its `event_id` is the number the history's next event would get), so a worker
    whose cached machine is current runs it at once. A rejected update leaves no event;
    an accepted one is recorded by WorkflowExecutionUpdateAccepted."""

    update_id: str
    name: str
    input: bytes


@dataclass(frozen=True)
class WorkflowExecutionUpdateAccepted(Event):
    """The update's validator passed (Temporal's event): written among the commands of
    the activation that ran it; replay runs the handler again from here, without the
    validator, at the same point of that activation."""

    is_command: ClassVar[bool] = True
    update_id: str
    name: str
    input: bytes


@dataclass(frozen=True)
class WorkflowExecutionUpdateCompleted(Event):
    """The update's handler returned `result` or failed with `failure`."""

    is_command: ClassVar[bool] = True
    update_id: str
    result: bytes = b""
    failure: dict[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        attrs = super().attributes()
        attrs.pop("result" if self.failure else "failure")
        return attrs


@dataclass(frozen=True)
class UpsertWorkflowSearchAttributes(Event):
    """workflow.upsert_search_attributes: the changed attributes (wire form,
    engine/search_attributes.py; a null value removes one)."""

    is_command: ClassVar[bool] = True
    search_attributes: dict[str, Any] = field(default_factory=dict)


# --- written by an operator or the engine, not by workflow code -----------------------


@dataclass(frozen=True)
class WorkflowExecutionTerminated(Event):
    reason: str = ""


@dataclass(frozen=True)
class WorkflowExecutionTimedOut(Event):
    """The run's run_timeout or its chain's execution_timeout ran out."""

    timeout_type: str = ""
