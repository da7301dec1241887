"""Schedules' Redis I/O: one method per function of engine/lua/90_schedule.lua, reads of
a schedule's hash, and the start of a fire's workflow (an ordinary rd_start in the
workflow's own shard, made idempotent by its deterministic id).

Why a fire starts exactly one workflow, whatever workers run or die (docs/design-notes.md
"Schedules"): a fire is taken by one fenced call in the schedule's shard
(rd_sched_advance, compare-and-set on the state's `seq`), which records the start as
*pending*; the start uses the id `<action id>-<fire time>` with REJECT_DUPLICATE and
USE_EXISTING, so doing it twice starts one run; rd_sched_started clears the pending
start once. A worker that dies in between leaves the pending start to the next worker
once its lease ends; no new fire is taken while one is pending.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from engine.calls import Call, text_of, unwrap
from engine.errors import (
    InvalidArgumentError,
    RedurableError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from engine.library import function_name
from engine.schedule_policy import Manual, ScheduleRecord, Step, next_fields, workflow_id_of
from engine.start_options import StartOptions, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from engine.store import Store
from engine.validate import MAX_ID_LENGTH, check_id


class ScheduleAlreadyRunningError(RedurableError):
    """create_schedule with the id of a schedule that exists."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} already exists")
        self.schedule_id = schedule_id


class ScheduleNotFoundError(RedurableError):
    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} not found")
        self.schedule_id = schedule_id


class ScheduleUpdateConflictError(RedurableError):
    """The schedule was updated by someone else between the read and the write."""


def _status(reply: Any) -> str:
    return text_of(unwrap(reply)[0])


class ScheduleStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys

    def _keys(self, schedule_id: str) -> list[str]:
        return [self.keys.schedule(schedule_id),
                self.keys.schedules(self.keys.shard(schedule_id))]

    async def _call(self, function: str, schedule_id: str, *args: Any) -> Any:
        reply = await self.store.call(Call(function, self._keys(schedule_id), [schedule_id, *args]))
        if _status(reply) == "not_found":
            raise ScheduleNotFoundError(schedule_id)
        return reply

    async def server_ms(self) -> int:
        seconds, micros = await self.store.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # --- client calls -----------------------------------------------------------------
    async def create(self, schedule_id: str, fields: dict[str, str | bytes]) -> None:
        flat = [v for pair in fields.items() for v in pair]
        reply = await self.store.call(
            Call("rd_sched_create", self._keys(schedule_id), [schedule_id, *flat]))
        if _status(reply) == "exists":
            raise ScheduleAlreadyRunningError(schedule_id)

    async def update(self, schedule_id: str, version: str,
                     fields: dict[str, str | bytes]) -> None:
        flat = [v for pair in fields.items() for v in pair]
        reply = await self._call("rd_sched_update", schedule_id, version, *flat)
        if _status(reply) == "conflict":
            raise ScheduleUpdateConflictError(
                f"schedule {schedule_id!r} was updated by someone else meanwhile; try again")

    async def pause(self, schedule_id: str, note: str) -> None:
        await self._call("rd_sched_control", schedule_id, "pause", note)

    async def unpause(self, schedule_id: str, note: str) -> None:
        """Fires due while it was paused are dropped, as in Temporal: it goes on from
        the first spec time after now."""
        rec = await self.read(schedule_id)
        fields = next_fields(rec.spec, schedule_id, await self.server_ms())
        await self._call("rd_sched_control", schedule_id, "unpause", note,
                         fields["next_ms"], fields["due_ms"])

    async def add_manual(self, schedule_id: str, item: Manual) -> None:
        await self._call("rd_sched_control", schedule_id, "manual", json.dumps(item.wire()))

    async def delete(self, schedule_id: str) -> None:
        await self._call("rd_sched_delete", schedule_id)

    async def read(self, schedule_id: str) -> ScheduleRecord:
        raw: dict[bytes, bytes] = await self.store.redis.hgetall(  # type: ignore[assignment]
            self.keys.schedule(schedule_id))
        if not raw or b"spec" not in raw:
            raise ScheduleNotFoundError(schedule_id)
        return ScheduleRecord.parse(schedule_id, raw)

    async def ids(self) -> AsyncIterator[str]:
        """Every schedule id of the namespace, shard by shard, in id order."""
        for shard in range(self.keys.shards):
            members = await self.store.redis.zrange(self.keys.schedules(shard), 0, -1)
            for member in sorted(members):
                yield text_of(member)

    # --- worker calls -----------------------------------------------------------------
    async def due(self, limit: int) -> list[tuple[int, int | None, list[str]]]:
        """Per shard: (server now ms, next score after now or None, ids due), all shards
        in one round trip."""
        pipe = self.store.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            pipe.fcall_ro(function_name("rd_sched_due"), 1, self.keys.schedules(shard), limit)
        out = []
        for reply in await pipe.execute():
            nxt = int(reply[1])
            out.append((int(reply[0]), None if nxt < 0 else nxt, [text_of(x) for x in reply[2:]]))
        return out

    async def closed_of(self, running: list[tuple[str, str]]) -> dict[str, str]:
        """Which of these workflow runs are no longer running (read in their shards),
        with how each ended ("" when its id holds another run now, or none)."""
        if not running:
            return {}
        pipe = self.store.redis.pipeline(transaction=False)
        for workflow_id, _ in running:
            pipe.hmget(self.keys.workflow(workflow_id), "status", "run_id")
        closed = {}
        for (workflow_id, run_id), (status, run) in zip(
                running, await pipe.execute(), strict=True):
            if text_of(run or b"") != run_id:
                closed[workflow_id] = ""
            elif status != b"RUNNING":
                closed[workflow_id] = text_of(status or b"")
        return closed

    async def advance(self, rec: ScheduleRecord, step: Step) -> str:
        """Write a step, fenced by the seq the record was read at: "ok", "stale" (read
        again) or "pending" (a start awaits confirmation)."""
        pending = ""
        if step.start is not None:
            pending = json.dumps({"fire": step.start,
                                  "wf": workflow_id_of(rec.action["id"], step.start)})
        reply = await self._call("rd_sched_advance", rec.schedule_id, rec.seq,
                                 json.dumps(step.fields), json.dumps(step.counters), pending)
        return _status(reply)

    async def start_fire(self, rec: ScheduleRecord, fire_ms: int, workflow_id: str) -> str:
        """Start the fire's workflow, or find the run an earlier attempt started;
        returns the run id."""
        action = rec.action
        options = StartOptions(
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            execution_timeout_ms=int(action.get("exec_ms") or 0),
            run_timeout_ms=int(action.get("run_ms") or 0),
            task_timeout_ms=int(action.get("task_ms") or 0),
        )
        try:
            return await self.store.start(workflow_id, uuid.uuid4().hex, action["workflow"],
                                          action["task_queue"], rec.args, options, rec.memo)
        except WorkflowAlreadyStartedError as exc:
            return exc.run_id

    async def started(self, schedule_id: str, fire_ms: int, workflow_id: str,
                      run_id: str) -> bool:
        """Record the pending start as done; False when another worker did already."""
        reply = await self._call("rd_sched_started", schedule_id, fire_ms, workflow_id, run_id)
        return _status(reply) == "ok"

    async def stop_others(self, step: Step, reason: str) -> None:
        """The overlap policy's cancels and terminations (each idempotent: a run that
        has closed meanwhile is left alone)."""
        for workflow_id, run_id in step.cancel:
            with contextlib.suppress(WorkflowNotFoundError, WorkflowNotRunningError):
                await self.store.cancel(workflow_id, run_id, reason)
        for workflow_id, run_id in step.terminate:
            with contextlib.suppress(WorkflowNotFoundError, WorkflowNotRunningError):
                await self.store.terminate(workflow_id, run_id, reason)


#: A fire's workflow id is the action's id + "-YYYY-MM-DDTHH:MM:SSZ" (21 characters),
#: and must fit MAX_ID_LENGTH.
MAX_ACTION_ID_LENGTH = MAX_ID_LENGTH - 21


def check_action_id(value: object) -> str:
    action_id = check_id(value, "schedule action's workflow id")
    if len(action_id) > MAX_ACTION_ID_LENGTH:
        raise InvalidArgumentError(
            f"a schedule action's workflow id must be at most {MAX_ACTION_ID_LENGTH} "
            "characters (the fire time is appended to it)")
    return action_id
