"""What the client hands back: history events, workflow rows and descriptions, pending
activities; and how they are read from a run's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine import events as ev
from engine.codec import PayloadCodec
from engine.errors import RedurableError
from engine.keys import Keys
from engine.search_attributes import TypedSearchAttributes
from engine.status import WorkflowExecutionStatus

_EPOCH = datetime.fromtimestamp(0, tz=UTC)


def parse_time(ms: bytes | str | int | None) -> datetime | None:
    if ms is None or ms == b"":
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def dead_letter_id(
    keys: Keys, workflow_id: str, wft: bytes | None, letter: bytes | None
) -> str | None:
    """The `dlq` id of the run's dead-lettered workflow task (rd_wft_fail notes its
    entry while the run's task state is 'dead'), else None."""
    if wft != b"dead" or not letter:
        return None
    return f"{keys.shard(workflow_id)}/{letter.decode()}"


def text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


@dataclass(frozen=True)
class HistoryEvent:
    event_id: int
    type: str
    timestamp: datetime
    attributes: dict[str, Any]


@dataclass(frozen=True)
class PendingActivity:
    activity_id: int
    activity_type: str
    state: str  # SCHEDULED, STARTED or BACKOFF
    attempt: int
    last_failure: dict[str, Any] | None
    scheduled_time: datetime | None
    last_started_time: datetime | None
    next_attempt_time: datetime | None


@dataclass(frozen=True)
class WorkflowExecution:
    """One row of `list_workflows`."""

    id: str
    run_id: str
    status: WorkflowExecutionStatus
    workflow_type: str
    task_queue: str
    start_time: datetime | None
    close_time: datetime | None
    #: The run's workflow task is in the dead letters (it failed in a way no retry
    #: cures, max_deliveries times): its id for `redurable dlq requeue`, else None.
    #: The run stays RUNNING with nothing due until it is requeued or terminated.
    dead_letter_id: str | None = None
    #: The run's search attributes, name -> value, and as typed pairs (temporalio's
    #: `typed_search_attributes`). docs/visibility.md.
    search_attributes: dict[str, Any] = field(default_factory=dict)
    typed_search_attributes: TypedSearchAttributes = field(
        default_factory=TypedSearchAttributes)

    @property
    def cursor(self) -> tuple[int, str]:
        """Pass as `list_workflows(after=...)` to continue after this row: its start
        time (ms, the score of every visibility index) and id."""
        start_ms = (self.start_time - _EPOCH) // timedelta(milliseconds=1) if self.start_time else 0
        return start_ms, self.id


@dataclass(frozen=True, kw_only=True)
class WorkflowDescription(WorkflowExecution):
    """What `describe()` tells: the row, and the run's progress."""

    history_length: int
    pending_activities: list[PendingActivity] = field(default_factory=list)
    last_workflow_task_failure: dict[str, Any] | None = None
    workflow_task_attempt: int = 1
    #: The last signals the workflow dropped (input that does not decode, arguments
    #: that do not fit the handler, no handler of that name) and why, else None.
    last_signal_dropped: str | None = None
    #: The run's memo (start_workflow(memo=...)), values as they decode; {} if none.
    memo: dict[str, Any] = field(default_factory=dict)
    #: The run chain's first run, and the run this one continued (None: none).
    first_execution_run_id: str | None = None
    continued_run_id: str | None = None
    #: Start options (None: none given; task_timeout: the worker's default).
    execution_timeout: timedelta | None = None
    run_timeout: timedelta | None = None
    task_timeout: timedelta | None = None
    #: A child workflow's parent (temporalio's names); None for a top-level workflow.
    parent_id: str | None = None
    parent_run_id: str | None = None


def to_history_event(event: ev.Event, codec: PayloadCodec) -> HistoryEvent:
    """Public form of an event: payload attributes decoded with the codec."""
    attributes: dict[str, Any] = {}
    for name, value in event.attributes().items():
        if name in ev.START_OPTION_FIELDS and value in (0, "", b""):
            continue  # a start option not given: left out, as before options existed
        if isinstance(value, bytes):
            try:
                attributes[name] = codec.decode(value)
            except RedurableError:
                attributes[name] = value
        else:
            attributes[name] = value
    return HistoryEvent(
        event_id=event.event_id,
        type=event.type,
        timestamp=datetime.fromtimestamp(event.timestamp / 1000, tz=UTC),
        attributes=attributes,
    )
