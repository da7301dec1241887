"""Turning a workflow task into the call that commits it: running the replay machine on
the event the task carries (speculation, no round trip) or on the history after the
cached cursor, the local activities it waits for, and the completion or failure call,
with the eager activity slots it may ask for. sdk/worker/workflow_tasks.py does the
polling, the rounds and the commits."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import structlog

from engine import commands as cmd
from engine import events as ev
from engine.errors import ApplicationError, to_failure
from engine.events import decode_packed_event
from engine.machine import LOGIC_FLAGS
from engine.store import Call, WorkflowTaskStart
from sdk._definitions import ActivityDefinition, WorkflowDefinition
from sdk.worker.activity_tasks import ActivityTasks
from sdk.worker.local_activities import LocalActivities
from sdk.worker.plumbing import TaskPlumbing
from sdk.worker.task_entry import TaskEntry
from sdk.worker.update_tasks import split_update
from sdk.worker.workflow_runner import CachedRun, StickyCache, new_machine

log = structlog.get_logger("redurable.worker")


@dataclass
class OneWrite:
    """A one-write activity step in flight: its call, the cached run it ran ahead, and
    the activity slots it asked for."""

    call: Call
    cached: CachedRun
    slots: int
    #: When its activation began (perf_counter), for the workflow task metrics.
    began: float

#: Workflow task failures no retry can cure: after max_deliveries attempts the task goes
#: to the dead letters (an operator deploys the type or fixes the data, then requeues).
#: Other failures (bugs, non-determinism) retry with backoff until the code is fixed.
POISON_TYPES = frozenset({"WorkflowTypeNotRegistered", "PayloadError", "CodecKeyError"})


class Activations:
    """Runs activations for one worker's workflow tasks (see the module doc)."""

    def __init__(
        self,
        plumbing: TaskPlumbing,
        workflows: dict[str, WorkflowDefinition],
        cache: StickyCache,
        activities: ActivityTasks,
        *,
        local_activities: dict[str, ActivityDefinition],
        task_timeout_ms: int,
        sticky_ms: int,
    ) -> None:
        self._plumbing = plumbing
        self._store = plumbing.store
        self._workflows = workflows
        self.cache = cache
        #: Where the activity tasks a completion hands over run (eager slots).
        self._activities = activities
        #: Local activities run here, inside the workflow task that asks for them.
        self._local = LocalActivities(
            local_activities, activities.executor, plumbing.client.codec)
        self.task_timeout_ms = task_timeout_ms
        #: Sticky routing: what our completions ask for (docs/design-notes.md "Sticky
        #: workflows"): the workflow's next task on our own stream, to be started
        #: within sticky_ms. No sticky name (no cache): any worker.
        self.sticky = plumbing.sticky or ""
        self.sticky_ms = sticky_ms
        #: Activity slots this round's completions may still ask for (_eager_slots): set
        #: by the round (new_round), spent by its completions.
        self.eager_free = 0
        #: Activity slots the one-write steps in flight asked for (_one_write_slots).
        self.one_write_promised = 0

    def _usable(self, wf_id: str, run_id: str) -> CachedRun | None:
        """The cached run, unless a one-write step in flight ran it ahead (then it is
        evicted: the history decides, by a replay)."""
        cached = self.cache.get(wf_id, run_id)
        if cached is not None and cached.ahead:
            self.cache.evict(wf_id)
            return None
        return cached

    def one_write(self, task: TaskEntry, result: bytes, now_ms: int | None,
                  failure: dict[str, Any] | None = None) -> OneWrite | None:
        """An activity step in one write (docs/design-notes.md "One-write activity
        steps"): when we own the workflow's run, cached at the history's end, run its
        code on the ActivityTaskCompleted that `result` makes (with `failure`, its JSON
        in `result`: the ActivityTaskFailed, if the failure is the activity's last) and
        return the call that writes both. None: end the attempt the plain way."""
        plumbing = self._plumbing
        if not self.sticky or plumbing.stopping or now_ms is None:
            return None
        wf_id, run_id = task.get("workflow_id"), task.get("run_id")
        cached = self.cache.get(wf_id, run_id)
        if (cached is None or cached.ahead or cached.machine.closed
                or cached.committed_id != cached.machine.last_event_id):
            return None
        machine = cached.machine
        fields = {b"type": b"ActivityTaskCompleted", b"result": result}
        if failure is not None:
            # Only a final failure ends the activity: a retry queues no workflow task.
            final = machine.final_failure(int(task.get("activity_id")),
                                          int(task.get("attempt")), result, failure)
            if final is None:
                return None
            result = final
            fields = {b"type": b"ActivityTaskFailed", b"failure": final}
        # Never before our last commit of it: the history's last event (else refused).
        now_ms = max(now_ms, cached.committed_ms)
        # The event exactly as the Lua appends it (finish_activity): the same fields,
        # decoded the same way; the next id if the history is where we saw it (the Lua
        # refuses the step otherwise). Its ts is the server's, unknown here and unread
        # by the code: the activation's time is now_ms.
        event = ev.decode_event({
            b"id": str(machine.last_event_id + 1).encode(), b"ts": str(now_ms).encode(),
            b"activity_id": task.fields[b"activity_id"], b"attempt": task.fields[b"attempt"],
            **fields})
        began = time.perf_counter()
        cached.ahead = True  # from here on the machine is ahead of the history
        try:
            commands = machine.activate([event], now_ms)
        except Exception:  # the plain path replays and records the failure
            self.cache.evict(wf_id)
            return None
        if machine.local_requests():
            self.cache.evict(wf_id)  # local activities run on the normal path
            return None
        slots = self._one_write_slots(commands)
        call = self._store.act_complete_wft_call(
            wf_id, run_id, task.get("activity_id"), task.get("attempt"), task.msg_id,
            task.stream, result, worker=plumbing.identity, task_queue=plumbing.task_queue,
            sticky=self.sticky, now_ms=machine.now_ms, flags=LOGIC_FLAGS, commands=commands,
            seen_next_event_id=event.event_id + 1, eager_slots=slots, sticky_ms=self.sticky_ms,
            failed=failure is not None)
        return OneWrite(call, cached, slots, began)

    def _one_write_slots(self, commands: list[Any]) -> int:
        """_eager_slots for a one-write step: the free slots, and the one its attempt
        frees, less those other steps in flight were promised."""
        types = [c.activity_type for c in commands if isinstance(c, cmd.ScheduleActivity)]
        if not types or any(not self._activities.runs(t) for t in types):
            return 0
        free = self._activities.free_slots() + 1 - self.one_write_promised
        granted = max(0, min(len(types), free))
        self.one_write_promised += granted
        return granted

    def new_round(self) -> None:
        self.eager_free = max(0, self._activities.free_slots())

    def speculate(self, task: TaskEntry) -> Call | None:
        """Run the activation on the event the task carries, if our cached machine is
        right before it (or it is a new workflow's first event). None: start normally."""
        raw = task.fields.get(b"event")
        if not raw:
            return None
        wf_id, run_id = task.get("workflow_id"), task.get("run_id")
        try:
            event = decode_packed_event(raw)
        except (ValueError, IndexError):
            return None
        cached = self._usable(wf_id, run_id)
        outcome = "cache_hits"
        if cached is None:
            if not isinstance(event, ev.WorkflowExecutionStarted) or event.event_id != 1:
                return None
            outcome = "new_runs"
            definition = self._workflows.get(event.workflow_type)
            if definition is None:
                return None
            cached = CachedRun(new_machine(definition, wf_id, run_id, event.task_queue,
                                           self._plumbing.client.codec))
            self.cache.put(wf_id, cached)
        elif cached.machine.last_event_id + 1 != event.event_id:
            return None
        # An update request is no history event: the machine runs it with no input.
        inputs, updates = split_update(event)
        try:
            commands = cached.machine.activate(inputs, event.timestamp, updates)
        except Exception:  # the normal path replays and records the failure
            self.cache.evict(wf_id)
            return None
        if cached.machine.local_requests():
            # Local activities run between passes of the activation, on the normal
            # path (this one has no await): it replays up to here, then runs them.
            self.cache.evict(wf_id)
            return None
        self._plumbing.stats[outcome] += 1
        return self._store.wft_complete_call(
            wf_id, run_id, task.get("epoch"), None, task.msg_id, task.stream,
            self._plumbing.identity,
            cached.machine.now_ms,  # the time the code saw (see activate)
            LOGIC_FLAGS, commands, seen_next_event_id=event.event_id + len(inputs),
            eager_slots=self._eager_slots(commands), sticky=self.sticky,
            sticky_ms=self.sticky_ms)

    async def activate(self, task: TaskEntry, started: WorkflowTaskStart) -> Call:
        """Run one activation; returns the completion (or failure) call to commit."""
        plumbing, store = self._plumbing, self._store
        wf_id, run_id = task.get("workflow_id"), task.get("run_id")
        epoch = task.get("epoch")
        entries = started.entries
        cached = self._usable(wf_id, run_id)
        if cached is not None and (
            (entries and entries[0][1].event_id != cached.machine.last_event_id + 1)
            # The history is shorter than what the cached run saw committed (a failover
            # to a replica that had not got the last transitions): no entry follows the
            # cursor, yet the cache is ahead. Replaying what is stored is the truth.
            or (started.next_event_id
                and cached.machine.last_event_id + len(entries) + 1 != started.next_event_id)
        ):
            self.cache.evict(wf_id)
            cached = None
            entries = await store.read_history(wf_id)
        # Counted for the fleet benchmark: a hit costs one activation, a full replay
        # re-runs the whole history (scripts/bench/fleet.py).
        if cached is not None:
            plumbing.stats["cache_hits"] += 1
        try:
            if cached is None:
                if not entries or not isinstance(entries[0][1], ev.WorkflowExecutionStarted):
                    entries = await store.read_history(wf_id)
                plumbing.stats["full_replays" if len(entries) > 1 else "new_runs"] += 1
                first = entries[0][1]
                assert isinstance(first, ev.WorkflowExecutionStarted)
                definition = self._workflows.get(first.workflow_type)
                if definition is None:
                    raise ApplicationError(
                        f"workflow type {first.workflow_type!r} is not registered on worker "
                        f"{plumbing.identity} (registered: {', '.join(sorted(self._workflows))})",
                        type="WorkflowTypeNotRegistered",
                    )
                machine = new_machine(definition, wf_id, run_id, first.task_queue,
                                      plumbing.client.codec, started.attempt)
                cached = CachedRun(machine)
                self.cache.put(wf_id, cached)
            machine = cached.machine
            commands = machine.activate([e for _, e in entries], started.now_ms, started.updates)
            # Local activities: run what the code waits for, hand the outcomes back,
            # until it waits for nothing local (docs/design-notes.md "Local activities").
            while requests := machine.local_requests():
                plumbing.stats["local_activities"] += len(requests)
                commands = machine.resolve_local_activities(
                    await self._local.run_keeping(
                        requests, machine.info, store, store.wft_extend_call(
                            wf_id, run_id, epoch, started.token, self.task_timeout_ms),
                        self.task_timeout_ms))
        except Exception as exc:
            self.cache.evict(wf_id)
            failure = to_failure(exc)
            failure["attempt"] = started.attempt
            failure["worker"] = plumbing.identity
            failure["time"] = started.now_ms
            if exc.__cause__ is not None:
                failure["stack"] = "".join(traceback.format_exception(exc.__cause__))[-4000:]
            log.warning(
                "workflow_task_failed",
                workflow_id=wf_id,
                run_id=run_id,
                error=failure["message"],
                attempt=started.attempt,
            )
            plumbing.stats["workflow_task_failures"] += 1
            # The code's own error when it raised one (the failure wraps it).
            cause = exc.__cause__
            plumbing.note_failure(task, type(cause).__name__ if cause else failure["type"])
            reason = None
            if failure["type"] in POISON_TYPES and started.attempt >= plumbing.max_deliveries:
                reason = f"{failure['message']} (workflow task failed {started.attempt} times)"
                log.error("workflow_task_dead_lettered", workflow_id=wf_id, reason=reason)
                plumbing.stats["dead_lettered"] += 1
            return store.wft_fail_call(
                wf_id, run_id, epoch, started.token, task.msg_id, task.stream, failure, reason
            )
        return store.wft_complete_call(
            wf_id,
            run_id,
            epoch,
            started.token,
            task.msg_id,
            task.stream,
            plumbing.identity,
            # The time the code saw (the machine never lets it go back), not the
            # server's: recording a server clock that stepped back made replays see
            # another workflow.now() than the live run did.
            cached.machine.now_ms,
            LOGIC_FLAGS,
            commands,
            eager_slots=self._eager_slots(commands),
            sticky=self.sticky,
            sticky_ms=self.sticky_ms,
        )

    def _eager_slots(self, commands: list[Any]) -> int:
        """How many of this completion's activity tasks to take at once: only when we
        run every type it schedules, and only from the free slots not yet promised."""
        types = [c.activity_type for c in commands if isinstance(c, cmd.ScheduleActivity)]
        if not types or self._plumbing.stopping:
            return 0
        if any(not self._activities.runs(t) for t in types):
            return 0
        granted = min(len(types), self.eager_free)
        self.eager_free -= granted
        return granted
