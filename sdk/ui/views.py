"""What the detail page shows, assembled from describe() and the decoded history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.status import WorkflowExecutionStatus
from sdk._present import SUMMARY_HIDDEN, pretty, to_json
from sdk.client.client import Client
from sdk.client.types import HistoryEvent, WorkflowDescription
from sdk.ui import timeline
from sdk.ui.queries import registered_queries

#: Attributes that hold user payloads: shown pretty-printed in their own block.
PAYLOAD_ATTRIBUTES = frozenset({"input", "result", "failure", "details"})


@dataclass(frozen=True)
class EventRow:
    event_id: int
    type: str
    time: datetime
    #: Short attributes as (name, JSON text); payloads separately, pretty-printed.
    fields: list[tuple[str, str]]
    payloads: list[tuple[str, str]]


def event_row(event: HistoryEvent) -> EventRow:
    fields: list[tuple[str, str]] = []
    payloads: list[tuple[str, str]] = []
    for name, value in event.attributes.items():
        if name in PAYLOAD_ATTRIBUTES:
            payloads.append((name, pretty(value)))
        elif value not in ("", None, {}, []) and name not in SUMMARY_HIDDEN:
            fields.append((name, value if isinstance(value, str) else to_json(value, indent=None)))
    return EventRow(event.event_id, event.type, event.timestamp, fields, payloads)


def failure_chain(failure: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A failure document and its causes, outermost first."""
    chain: list[dict[str, Any]] = []
    while isinstance(failure, dict) and len(chain) < 20:
        chain.append(failure)
        failure = failure.get("cause")
    return chain


@dataclass(frozen=True)
class ChildRow:
    workflow_id: str
    workflow_type: str
    state: str


def child_rows(events: list[HistoryEvent]) -> list[ChildRow]:
    """Each child the run started and its last known state (Initiated, Started,
    Completed, Failed, ..., or StartFailed), in the order they were started."""
    rows: dict[int, list[str]] = {}
    for event in events:
        seq = int(event.attributes.get("seq", 0))
        if event.type == "StartChildWorkflowExecutionInitiated":
            rows[seq] = [str(event.attributes.get("workflow_id")),
                         str(event.attributes.get("workflow_type")), "Initiated"]
        elif seq in rows and event.type == "StartChildWorkflowExecutionFailed":
            rows[seq][2] = "StartFailed"
        elif seq in rows and event.type.startswith("ChildWorkflowExecution"):
            rows[seq][2] = event.type.removeprefix("ChildWorkflowExecution")
    return [ChildRow(*row) for row in rows.values()]


@dataclass(frozen=True)
class Detail:
    description: WorkflowDescription
    events: list[EventRow]
    timeline: timeline.Timeline
    input: str | None
    result: str | None
    failure: list[dict[str, Any]]
    close_reason: str
    queries: list[str]
    #: The child workflows this run started, from its history: (seq, workflow id,
    #: type, how it stands: the last Child... event's type without its prefix).
    children: list[ChildRow] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.description.status is WorkflowExecutionStatus.RUNNING


async def load_detail(client: Client, workflow_id: str) -> Detail:
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    events = [e async for e in handle.fetch_history()]
    start = next((e for e in events if e.type == "WorkflowExecutionStarted"), None)
    result: str | None = None
    failure: dict[str, Any] | None = None
    reason = ""
    for event in reversed(events):
        if event.type == "WorkflowExecutionCompleted":
            result = pretty(event.attributes.get("result"))
        elif event.type == "WorkflowExecutionFailed":
            failure = event.attributes.get("failure")
        elif event.type in ("WorkflowExecutionTerminated", "WorkflowExecutionCancelRequested"):
            reason = str(event.attributes.get("reason", ""))
        else:
            continue
        break
    return Detail(
        description=description,
        events=[event_row(e) for e in events],
        timeline=timeline.build(events, datetime.now(UTC)),
        input=pretty(start.attributes.get("input")) if start is not None else None,
        result=result,
        failure=failure_chain(failure),
        close_reason=reason,
        queries=await registered_queries(
            client, description.task_queue, description.workflow_type
        ),
        children=child_rows(events),
    )


def query_literal(value: Any) -> str:
    """A search attribute's value as a visibility query writes it: 'text', 5, true,
    '2025-01-31T12:00:00+00:00'; a keyword list as ('a', 'b')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return query_literal(value.isoformat())
    if isinstance(value, list | tuple):
        return "(" + ", ".join(query_literal(v) for v in value) + ")"
    return "'" + str(value).replace("'", "''") + "'"
