"""The Schedules API's public shapes (temporalio's names): the schedule a user gives,
and what describe and list return. The spec and policy parts live in
engine/schedule_spec.py (the worker computes fire times with them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.errors import InvalidArgumentError
from engine.schedule_spec import SchedulePolicy, ScheduleSpec, ScheduleState
from sdk._definitions import workflow_type_name


class ScheduleActionStartWorkflow:
    """Start a workflow on each fire: `id` gets the fire time appended
    ("report-2026-01-01T03:00:00Z"), one workflow per fire."""

    def __init__(
        self,
        workflow: Callable[..., Any] | type | str,
        *positional: Any,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
        execution_timeout: timedelta | None = None,
        run_timeout: timedelta | None = None,
        task_timeout: timedelta | None = None,
        memo: Mapping[str, Any] | None = None,
    ) -> None:
        if args is not None and positional:
            raise InvalidArgumentError("give the workflow's arguments positionally or as args=")
        #: The workflow type's name (as given: a class, its run method, or the name).
        self.workflow = workflow_type_name(workflow)
        #: What was given, so the client can check and convert the arguments by its hints.
        self.workflow_ref = workflow
        self.args: list[Any] = list(args if args is not None else positional)
        self.id = id
        self.task_queue = task_queue
        self.execution_timeout = execution_timeout
        self.run_timeout = run_timeout
        self.task_timeout = task_timeout
        self.memo: dict[str, Any] = dict(memo or {})

    def __repr__(self) -> str:
        return (f"ScheduleActionStartWorkflow({self.workflow!r}, args={self.args!r}, "
                f"id={self.id!r}, task_queue={self.task_queue!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScheduleActionStartWorkflow):
            return NotImplemented
        return (self.workflow, self.args, self.id, self.task_queue, self.execution_timeout,
                self.run_timeout, self.task_timeout, self.memo) == (
            other.workflow, other.args, other.id, other.task_queue, other.execution_timeout,
            other.run_timeout, other.task_timeout, other.memo)

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Schedule:
    action: ScheduleActionStartWorkflow
    spec: ScheduleSpec
    policy: SchedulePolicy = field(default_factory=SchedulePolicy)
    state: ScheduleState = field(default_factory=ScheduleState)


@dataclass(frozen=True)
class ScheduleActionExecutionStartWorkflow:
    """A workflow a fire started."""

    workflow_id: str
    first_execution_run_id: str


@dataclass(frozen=True)
class ScheduleActionResult:
    scheduled_at: datetime
    started_at: datetime
    action: ScheduleActionExecutionStartWorkflow


@dataclass(frozen=True)
class ScheduleInfo:
    num_actions: int
    num_actions_missed_catchup_window: int
    num_actions_skipped_overlap: int
    running_actions: list[ScheduleActionExecutionStartWorkflow]
    recent_actions: list[ScheduleActionResult]
    next_action_times: list[datetime]
    created_at: datetime
    last_updated_at: datetime | None
    #: Fires queued by trigger/backfill or waiting for a running one (BUFFER_*).
    num_buffered: int = 0


@dataclass(frozen=True)
class ScheduleDescription:
    id: str
    schedule: Schedule
    info: ScheduleInfo


@dataclass(frozen=True)
class ScheduleListActionStartWorkflow:
    workflow: str


@dataclass(frozen=True)
class ScheduleListSchedule:
    action: ScheduleListActionStartWorkflow
    spec: ScheduleSpec
    state: ScheduleState


@dataclass(frozen=True)
class ScheduleListInfo:
    recent_actions: list[ScheduleActionResult]
    next_action_times: list[datetime]


@dataclass(frozen=True)
class ScheduleListDescription:
    id: str
    schedule: ScheduleListSchedule
    info: ScheduleListInfo


@dataclass(frozen=True)
class ScheduleUpdateInput:
    description: ScheduleDescription


@dataclass(frozen=True)
class ScheduleUpdate:
    schedule: Schedule


ScheduleUpdater = Callable[
    [ScheduleUpdateInput], "ScheduleUpdate | Awaitable[ScheduleUpdate | None] | None"
]
