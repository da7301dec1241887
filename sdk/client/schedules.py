"""The Schedules API of the client (temporalio's shape): create, handle, list.

A schedule is stored in the shard of its id (engine/schedules.py); workers fire it
(sdk/worker/scheduler.py). Calls here only write what the user asked for: a trigger or
backfill is queued for the next worker to carry out.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidArgumentError
from engine.schedule_policy import Manual, ScheduleRecord, next_fields
from engine.schedule_spec import (
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    ScheduleState,
    WireSpec,
    from_ms,
    positive_ms,
    to_ms,
)
from engine.schedules import ScheduleNotFoundError, ScheduleStore, check_action_id
from engine.validate import check_id, check_task_queue
from sdk._definitions import workflow_definition
from sdk._memo import memo_from_wire, memo_to_wire
from sdk._payload_hints import hints_of, untyped
from sdk.client.schedule_types import (
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionResult,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleInfo,
    ScheduleListActionStartWorkflow,
    ScheduleListDescription,
    ScheduleListInfo,
    ScheduleListSchedule,
    ScheduleUpdate,
    ScheduleUpdateInput,
    ScheduleUpdater,
)

if TYPE_CHECKING:
    from sdk.client.client import Client

#: How many next fire times describe and list show.
NEXT_TIMES = 10


def check_schedule_id(value: object) -> str:
    return check_id(value, "schedule id")


def _schedule_fields(client: Client, schedule: Schedule) -> dict[str, str | bytes]:
    """The user's schedule as the hash fields it is stored in (validated here: bad input
    is an error at the call, never a schedule that cannot fire)."""
    if not isinstance(schedule, Schedule):
        raise InvalidArgumentError(f"expected a Schedule, not {schedule!r}")
    action = schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        raise InvalidArgumentError("a schedule's action must be a ScheduleActionStartWorkflow")
    ref = action.workflow_ref
    hints = (untyped(action.workflow) if isinstance(ref, str)
             else hints_of(workflow_definition(ref).run_fn, method=True))
    doc = {
        "workflow": action.workflow, "id": check_action_id(action.id),
        "task_queue": check_task_queue(action.task_queue),
        "exec_ms": positive_ms(action.execution_timeout, "execution_timeout"),
        "run_ms": positive_ms(action.run_timeout, "run_timeout"),
        "task_ms": positive_ms(action.task_timeout, "task_timeout"),
    }
    state = schedule.state
    return {
        "spec": schedule.spec.to_wire(),
        "policy": schedule.policy.to_wire(),
        "action": json.dumps(doc),
        "args": client.codec.encode(hints.encode_args(action.args)),
        "memo": client.codec.encode(memo_to_wire(action.memo)) if action.memo else b"",
        "paused": "1" if state.paused else "0",
        "note": state.note,
    }


def _action_of(client: Client, rec: ScheduleRecord) -> ScheduleActionStartWorkflow:
    a = rec.action
    args = client.codec.decode(rec.args) if rec.args else []

    def span(ms: Any) -> timedelta | None:
        return timedelta(milliseconds=int(ms)) if ms else None

    return ScheduleActionStartWorkflow(
        a["workflow"], args=list(args), id=a["id"], task_queue=a["task_queue"],
        execution_timeout=span(a.get("exec_ms")), run_timeout=span(a.get("run_ms")),
        task_timeout=span(a.get("task_ms")),
        memo=memo_from_wire(client.codec.decode(rec.memo)) if rec.memo else None,
    )


def _recent(rec: ScheduleRecord) -> list[ScheduleActionResult]:
    return [ScheduleActionResult(from_ms(r.fire_ms), from_ms(r.started_ms),
                                 ScheduleActionExecutionStartWorkflow(r.workflow_id, r.run_id))
            for r in rec.recent]


def next_action_times(rec: ScheduleRecord) -> list[datetime]:
    if rec.paused or rec.next_ms is None:
        return []
    times = [rec.next_ms, *rec.spec.times_between(rec.next_ms, 2**62, NEXT_TIMES - 1)]
    return [from_ms(t + rec.spec.jitter_of(rec.schedule_id, t)) for t in times]


def describe_record(client: Client, rec: ScheduleRecord,
                    closed: Collection[str] | None = None) -> ScheduleDescription:
    """`closed`: workflows of `rec.running` known to have closed since the last fire
    (the stored list is pruned only when the schedule next fires)."""
    schedule = Schedule(action=_action_of(client, rec), spec=rec.spec.public(),
                        policy=rec.policy, state=ScheduleState(note=rec.note, paused=rec.paused))
    info = ScheduleInfo(
        num_actions=rec.actions, num_actions_missed_catchup_window=rec.missed,
        num_actions_skipped_overlap=rec.skipped,
        running_actions=[ScheduleActionExecutionStartWorkflow(w, r) for w, r in rec.running
                         if w not in (closed or ())],
        recent_actions=_recent(rec), next_action_times=next_action_times(rec),
        created_at=from_ms(rec.created_ms),
        last_updated_at=from_ms(rec.updated_ms) if rec.updated_ms else None,
        num_buffered=len(rec.buffer) + len(rec.manual),
    )
    return ScheduleDescription(rec.schedule_id, schedule, info)


async def create_schedule(client: Client, schedule_id: str, schedule: Schedule) -> ScheduleHandle:
    schedule_id = check_schedule_id(schedule_id)
    fields = _schedule_fields(client, schedule)
    store = ScheduleStore(client.store)
    now = await client.retrier.retry("read the server clock", store.server_ms)
    fields.update(next_fields(WireSpec.parse(fields["spec"]), schedule_id, now))
    # Not retried after a lost reply: the retry would meet the schedule it created.
    await store.create(schedule_id, fields)
    return ScheduleHandle(client, schedule_id)


async def list_schedules(client: Client) -> AsyncIterator[ScheduleListDescription]:
    store = ScheduleStore(client.store)
    async for schedule_id in store.ids():
        try:
            rec = await store.read(schedule_id)
        except ScheduleNotFoundError:
            continue  # deleted between the listing and the read
        yield ScheduleListDescription(
            schedule_id,
            ScheduleListSchedule(ScheduleListActionStartWorkflow(rec.action["workflow"]),
                                 rec.spec.public(), ScheduleState(rec.note, rec.paused)),
            ScheduleListInfo(_recent(rec), next_action_times(rec)),
        )


class ScheduleHandle:
    """A schedule by id (client.get_schedule_handle)."""

    def __init__(self, client: Client, schedule_id: str) -> None:
        self.client = client
        self.id = check_schedule_id(schedule_id)
        self._store = ScheduleStore(client.store)

    async def describe(self) -> ScheduleDescription:
        rec = await self.client.retrier.retry(f"describe schedule {self.id!r}",
                                              lambda: self._store.read(self.id))
        closed = await self.client.retrier.retry(f"describe schedule {self.id!r}",
                                                 lambda: self._store.closed_of(rec.running))
        return describe_record(self.client, rec, closed)

    async def pause(self, *, note: str | None = None) -> None:
        await self._store.pause(self.id, note if note is not None else "Paused via client")

    async def unpause(self, *, note: str | None = None) -> None:
        """Fire on the spec again, from the first time after now."""
        await self._store.unpause(self.id, note if note is not None else "Unpaused via client")

    async def trigger(self, *, overlap: ScheduleOverlapPolicy | None = None) -> None:
        """Fire now (the next worker starts it), with this overlap policy or the
        schedule's."""
        await self._store.add_manual(self.id, Manual(_overlap(overlap), at=0))

    async def backfill(self, *backfill: ScheduleBackfill) -> None:
        """Fire for each spec time in each backfill's [start_at, end_at]."""
        if not backfill:
            raise InvalidArgumentError("give at least one ScheduleBackfill")
        items = []
        for b in backfill:
            if not isinstance(b, ScheduleBackfill):
                raise InvalidArgumentError(f"expected a ScheduleBackfill, not {b!r}")
            start, end = to_ms(b.start_at), to_ms(b.end_at)
            if end < start:
                raise InvalidArgumentError("a backfill's end_at is before its start_at")
            items.append(Manual(_overlap(b.overlap), after=start - 1, until=end))
        for item in items:
            await self._store.add_manual(self.id, item)

    async def update(self, updater: ScheduleUpdater) -> None:
        """Read the schedule, call `updater` with it, and write the ScheduleUpdate it
        returns (None: no change). ScheduleUpdateConflictError when another update came
        in between."""
        rec = await self._store.read(self.id)
        result = updater(ScheduleUpdateInput(describe_record(self.client, rec)))
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return
        if not isinstance(result, ScheduleUpdate):
            raise InvalidArgumentError(f"the updater must return a ScheduleUpdate, not {result!r}")
        fields = _schedule_fields(self.client, result.schedule)
        if fields["spec"] != rec.spec_wire or rec.next_ms is None:
            now = await self._store.server_ms()
            fields.update(next_fields(WireSpec.parse(fields["spec"]), self.id, now))
        await self._store.update(self.id, rec.version, fields)

    async def delete(self) -> None:
        """Delete the schedule; the workflows it started run on."""
        await self._store.delete(self.id)


def _overlap(value: ScheduleOverlapPolicy | None) -> ScheduleOverlapPolicy | None:
    if value is not None and not isinstance(value, ScheduleOverlapPolicy):
        raise InvalidArgumentError(f"overlap must be a ScheduleOverlapPolicy, not {value!r}")
    return value
