"""The activity-task path of a worker: polling the activity streams, running each
attempt, sending start marks and heartbeats, and committing completions in batches
(which may hand the workflow's next workflow task over to us)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

import anyio
import structlog

from engine.errors import ApplicationError, PayloadError, to_failure
from engine.store import Call
from sdk import activity as activity_api
from sdk._definitions import ActivityDefinition
from sdk._payload_hints import hints_of
from sdk.interceptor import WorkerInterceptor
from sdk.worker.activity_attempt import (
    RunningActivity,
    attempt_context,
    attempt_ended,
    log_vars,
    new_scope,
)
from sdk.worker.activity_housekeeping import LAZY_START_S, Housekeeping
from sdk.worker.interception import run_activity
from sdk.worker.plumbing import TaskPlumbing, transient
from sdk.worker.server_clock import ServerClock
from sdk.worker.task_entry import Fields, TaskEntry

log = structlog.get_logger("redurable.worker")
#: Attempts with a start-to-close or heartbeat timeout under this are marked at once.
SHORT_TIMEOUT_MS = 4000 * LAZY_START_S
#: How long a suspect task waits for the other claimed tasks to be done.
SUSPECT_WAIT_S = 5.0
#: Completions committed in one round trip at most.
COMPLETION_BATCH = 256
#: The calls of one-write activity steps (WorkflowTasks.one_write).
ONE_WRITE_FUNCTIONS = frozenset({"rd_act_complete_wft", "rd_act_fail_wft"})


class EagerWorkflowTasks(Protocol):
    """Where the workflow tasks that activity completions hand over go."""

    async def take_eager(self, tasks: list[TaskEntry]) -> None: ...

    def one_write(self, task: TaskEntry, result: bytes, server_ms: int | None,
                  failure: dict[str, Any] | None = None) -> Call | None: ...

    def settle_one_write(self, call: Call, reply: Any) -> tuple[TaskEntry | None, int | None]: ...


class ActivityTasks:
    """Runs the activity tasks of one worker (see the module doc)."""

    claims_idle = True

    def __init__(
        self,
        plumbing: TaskPlumbing,
        activities: dict[str, ActivityDefinition],
        *,
        max_concurrent: int,
        executor: concurrent.futures.Executor,
    ) -> None:
        self._plumbing = plumbing
        self._store = plumbing.store
        self._codec = plumbing.client.codec
        self._activities = activities
        #: Where plain `def` activities run (sdk/worker/activity_attempt.py).
        self._executor = executor
        self.max_concurrent = max_concurrent
        self.claim_streams: Sequence[str] = plumbing.activity_streams
        # Keyed by (stream, entry id): entry ids are only unique within one stream.
        self.running: dict[tuple[str, str], RunningActivity] = {}
        #: Held but not started: claimed while the slots were full.
        self.backlog: list[TaskEntry] = []
        self.completions: list[Call] = []
        self._completion_ready = anyio.Event()
        self._slot_free = anyio.Event()
        #: Start marks and heartbeats of the running attempts.
        self.housekeeping = Housekeeping(plumbing, self.running)
        #: The worker's interceptors: each attempt runs through their activity chain.
        self.interceptors: Sequence[WorkerInterceptor] = ()
        #: Set when the worker polls workflow tasks too: activity completions then ask
        #: for the workflow task they queue.
        self.eager_workflow_tasks: EagerWorkflowTasks | None = None
        #: The server's clock as far as we can tell, for one-write activity steps.
        self.server_clock = ServerClock()

    @property
    def executor(self) -> concurrent.futures.Executor:
        """Where plain `def` activities run (local activities' attempts too)."""
        return self._executor

    def runs(self, activity_type: str) -> bool:
        return activity_type in self._activities

    def free_slots(self) -> int:
        """Slots neither running nor promised to the backlog."""
        return self.max_concurrent - len(self.running) - len(self.backlog)

    # --- what Liveness claims for us (sdk/worker/liveness.py) --------------------------
    def claim_limit(self, stream: str) -> int | None:
        """Claim only what we have slots for: claimed tasks are ours until we run them
        (see adopt), and a busy worker must not hoard a dead one's work."""
        return self.free_slots()

    @property
    def suspect(self) -> tuple[str, str] | None:
        """The suspect we hold, if any: one per worker, of either kind (TaskPlumbing)."""
        return self._plumbing.suspect

    def suspect_room(self, stream: str) -> int | None:
        """TaskPlumbing.suspect_room, waiting for claimed tasks SUSPECT_WAIT_S at most."""
        return self._plumbing.suspect_room(SUSPECT_WAIT_S)

    def adopt(
        self,
        stream: str,
        claimed: list[tuple[bytes, Fields]],
        suspects: AbstractSet[bytes] = frozenset(),
    ) -> None:
        """Run tasks claimed from a dead worker now: the poller may be blocked in a read
        for up to half a second (claiming leaves it no wake-up). `suspects` went down
        with workers before: we hold one at a time (see suspect_room)."""
        plumbing = self._plumbing
        tasks: list[TaskEntry] = []
        for task in plumbing.take_over(stream, claimed):
            if task.msg_id.encode() in suspects:
                self._plumbing.suspect = (stream, task.msg_id)  # until its attempt ends
                if plumbing.tg is not None and not plumbing.stopping:
                    plumbing.tg.start_soon(self._start_suspect_when_clear, task)
                    continue
            else:
                plumbing.count_claimed([task])
            tasks.append(task)
        if not tasks:
            return
        if plumbing.stopping or plumbing.tg is None:
            plumbing.claimed_done(tasks)
            self.backlog.extend(tasks)
            return
        # Within our free slots (claim_limit), counted before the claim's round trip:
        # the ones filled meanwhile (the poller, the other claim loop) wait.
        free = max(0, self.max_concurrent - len(self.running))
        self.start(tasks[:free])
        self.backlog.extend(tasks[free:])

    async def _start_suspect_when_clear(self, task: TaskEntry) -> None:
        """Run a suspect once the other tasks claimed from dead workers are done (for at
        most SUSPECT_WAIT_S): if it is what kills workers, they must not go down with
        it, delivery after delivery, into the dead letters."""
        plumbing = self._plumbing
        plumbing.suspect_waits(task)
        with anyio.move_on_after(SUSPECT_WAIT_S):
            while plumbing.claimed_in_flight > 0 and not plumbing.stopping:
                await anyio.sleep(0.01)
        if not plumbing.suspect_may_start(task):
            return  # a stopping worker handed it back
        if plumbing.stopping or len(self.running) >= self.max_concurrent:
            self.backlog.append(task)
        else:
            self.start([task])

    # --- polling and running ----------------------------------------------------------
    async def poll(self) -> None:
        plumbing = self._plumbing
        while not plumbing.stopping:
            free = self.max_concurrent - len(self.running)
            if free <= 0:
                self._slot_free = anyio.Event()
                with anyio.move_on_after(0.5):
                    await self._slot_free.wait()
                continue
            tasks, self.backlog = self.backlog[:free], self.backlog[free:]
            if not tasks:
                per_stream = max(1, free // plumbing.keys.shards)
                tasks = await plumbing.read(plumbing.activity_streams, per_stream)
            if tasks and plumbing.stopping:  # read as we stopped: handed back by the drain
                self.backlog.extend(tasks)
            elif tasks:
                self.start(tasks)

    def start(self, tasks: list[TaskEntry]) -> None:
        """Run each attempt at once. The start mark (which arms start-to-close and
        heartbeat timeouts) is sent later by the housekeeping loop, and only for
        attempts still running by then: most activities finish first and save it.

        Each attempt is a plain asyncio task, not a child of the worker's task group:
        an anyio child costs a handle, a second cancel scope, an event and a wrapper
        coroutine, a good part of a trivial activity's step. The attempt's own scope
        still cancels it (RunningActivity.cancel/release); _run lets no exception out
        (attempt_ended logs a bug's); the ones still running when the worker stops are
        cancelled by hand_back_running, as the task group's end cancelled them."""
        assert self._plumbing.tg is not None
        create_task = asyncio.get_running_loop().create_task
        now = time.monotonic()
        first_mark = float("inf")
        for task in tasks:
            self._plumbing.hold(task)
            get = task.fields.get
            # A schedule-to-start timeout fires unless the attempt is marked started:
            # the lazy mark would be too late for it.
            short = (0 < int(get(b"start_to_close_ms") or 0) < SHORT_TIMEOUT_MS
                     or 0 < int(get(b"heartbeat_ms") or 0) < SHORT_TIMEOUT_MS
                     or int(get(b"schedule_to_start_ms") or 0) != 0)
            running = RunningActivity(task, attempt_context(
                task, self._codec, self._activities.get(task.get("activity_type")),
                self._executor, self._plumbing.task_queue, self._plumbing.worker_shutdown),
                new_scope())
            running.mark_at = now if short else now + LAZY_START_S
            first_mark = min(first_mark, running.mark_at)
            self.running[(task.stream, task.msg_id)] = running
            running.runner = create_task(self._run(running))
            running.runner.add_done_callback(attempt_ended)
        if tasks:
            self.housekeeping.wake_at(first_mark)

    async def _run(self, running: RunningActivity) -> None:
        task, ctx = running.task, running.context
        info = ctx.info
        token = activity_api._context.set(ctx)
        bound = log_vars()
        values = (info.workflow_id, info.run_id, info.activity_type, info.attempt,
                  self._plumbing.task_queue)
        for var, value in zip(bound, values, strict=True):
            var.set(value)
        call: Call | None = None
        failure: dict[str, Any] | None = None
        try:
            definition = self._activities.get(info.activity_type)
            if definition is None:
                raise ApplicationError(
                    f"activity type {info.activity_type!r} is not registered on worker "
                    f"{self._plumbing.identity}",
                    type="ActivityNotRegistered",
                )
            args = self._codec.decode(task.fields.get(b"input", b""))
            hints = hints_of(definition.fn)
            try:
                args = hints.decode_args(args)
            except PayloadError as exc:
                # Every attempt would get the same arguments: do not retry.
                raise ApplicationError(str(exc), type="PayloadError",
                                       non_retryable=True) from None
            result: Any = None
            with running.scope:
                result = await run_activity(self.interceptors, definition, args, ctx,
                                            self._executor, task.fields.get(b"header"))
            if running.scope.cancelled_caught:
                if running.releasing:
                    call = self._store.release_call(task.stream, task.msg_id)
                else:
                    failure = to_failure(ApplicationError(
                        "activity cancelled", type="CancelledError", non_retryable=True))
            else:
                try:
                    payload = self._codec.encode(hints.encode_result(result))
                except PayloadError as exc:
                    # Another attempt would return the same value: do not retry.
                    raise ApplicationError(
                        f"activity result cannot be stored: {exc}", type="PayloadError",
                        non_retryable=True) from None
                call = self._one_write(task, payload) or self._store.act_complete_call(
                    info.workflow_id,
                    info.run_id,
                    task.get("activity_id"),
                    task.get("attempt"),
                    task.msg_id,
                    task.stream,
                    result=payload,
                    eager_consumer=self._eager_consumer(),
                    eager_task_queue=self._plumbing.task_queue,
                    eager_sticky=self._plumbing.sticky or "",
                )
        except activity_api.CompleteAsyncError:
            # Completed later through an async activity handle: mark the attempt
            # started (its timeouts run from there) and let its task go.
            call = self._store.act_start_call(
                info.workflow_id, info.run_id, task.get("activity_id"), task.get("attempt"),
                task.msg_id, task.stream, self._plumbing.identity, complete_async=True)
        except Exception as exc:
            log.info("activity_failed", error=f"{type(exc).__name__}: {exc}")
            self._plumbing.note_failure(task, getattr(exc, "type", None) or type(exc).__name__)
            failure = to_failure(exc)
        finally:
            try:
                if failure is not None:
                    # Out of the except clause: a one-write step runs workflow code here,
                    # whose exceptions must not chain to the activity's (__context__).
                    call = self._failure_call(task, failure, ctx.cancel_requested)
            finally:
                # Whatever building that call raised (a failure that is no JSON):
                # the attempt's slot, suspect mark and claimed count are let go.
                self._attempt_done(running, token, bound, call)

    def _attempt_done(self, running: RunningActivity, token: Any, bound: Any,
                      call: Call | None) -> None:
        """The end of an attempt's _run, however it ended."""
        task = running.task
        activity_api._context.reset(token)
        for var in bound:
            var.set(...)  # unbound, as structlog.contextvars.unbind_contextvars does
        if call is not None:
            self.completions.append(call)
            self._completion_ready.set()
        del self.running[(task.stream, task.msg_id)]
        if not self.running:
            self.housekeeping.nothing_runs()
        if task.claimed:
            self._plumbing.claimed_done([task])
        if self.suspect == (task.stream, task.msg_id):
            self._plumbing.suspect = None
        self._slot_free.set()
        self._start_backlog()

    def _start_backlog(self) -> None:
        """Start held tasks waiting for a slot (claimed beyond our free slots, a suspect)
        in the slot just freed: the poller, idle, may be blocked in a read for seconds
        (sdk/worker/plumbing.py IDLE_READ_BLOCK_MS)."""
        free = self.max_concurrent - len(self.running)
        if self.backlog and free > 0 and not self._plumbing.stopping and self._plumbing.tg:
            tasks, self.backlog = self.backlog[:free], self.backlog[free:]
            self.start(tasks)

    def _failure_call(self, task: TaskEntry, failure: dict[str, Any], heard_cancel: bool) -> Call:
        # A final failure may be a one-write step too; a CancelledError only when the
        # server asked for it (it then records a cancellation whatever the step does).
        if heard_cancel or failure["type"] != "CancelledError":
            one_write = self._one_write(
                task, json.dumps(failure, separators=(",", ":")).encode(), failure)
            if one_write is not None:
                return one_write
        return self._store.act_complete_call(
            task.get("workflow_id"),
            task.get("run_id"),
            task.get("activity_id"),
            task.get("attempt"),
            task.msg_id,
            task.stream,
            failure=failure,
            eager_consumer=self._eager_consumer(),
            eager_task_queue=self._plumbing.task_queue,
            eager_sticky=self._plumbing.sticky or "",
        )

    def _one_write(self, task: TaskEntry, result: bytes,
                   failure: dict[str, Any] | None = None) -> Call | None:
        """The attempt's end with the workflow's next step in it, when the workflow task
        path can run that step here (WorkflowTasks.one_write), else None."""
        if not self._eager_consumer():
            return None
        assert self.eager_workflow_tasks is not None
        return self.eager_workflow_tasks.one_write(
            task, result, self.server_clock.now_ms(), failure)

    def _eager_consumer(self) -> str:
        """Ask an activity completion to hand us the workflow task it queues, when we
        poll workflow tasks (of our task queue: the Lua checks the workflow's)."""
        if self.eager_workflow_tasks is None or self._plumbing.stopping:
            return ""
        return self._plumbing.identity

    # --- completions ------------------------------------------------------------------
    async def completion_loop(self) -> None:
        while True:
            if not self.completions:
                await self._completion_ready.wait()
            self._completion_ready = anyio.Event()
            await self.flush_completions()

    async def flush_completions(self) -> None:
        plumbing = self._plumbing
        while self.completions:
            batch = self.completions[:COMPLETION_BATCH]
            self.completions = self.completions[COMPLETION_BATCH:]
            try:
                replies = await self._store.call_many(batch)
            except Exception as exc:
                if transient(exc):
                    # Not written: keep them (their tasks stay in flight) and retry.
                    self.completions[:0] = batch
                raise
            eager: list[TaskEntry] = []
            again: list[Call] = []
            for call, reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception) and transient(reply):
                    again.append(call)  # "not now" in its slot (redis-py): not written
                    continue
                if isinstance(reply, Exception):
                    log.error("activity_completion_failed", error=str(reply))
                if call.task is not None:
                    plumbing.let_go(call.task)
                plumbing.stats["activities"] += 1
                if call.function in ONE_WRITE_FUNCTIONS:
                    assert self.eager_workflow_tasks is not None
                    task, server_ms = self.eager_workflow_tasks.settle_one_write(call, reply)
                    if server_ms is not None:
                        self.server_clock.observe(server_ms)
                    if task is not None:
                        eager.append(task)
                    continue
                handed = self._store.parse_eager_wft(reply)
                if handed is not None:
                    eager.append(TaskEntry(*handed))
            eager = plumbing.screened(eager)
            if eager and self.eager_workflow_tasks is not None:
                await self.eager_workflow_tasks.take_eager(eager)
            if again:
                self.completions[:0] = again
                raise next(r for r in replies if isinstance(r, Exception) and transient(r))

    async def housekeeping_loop(self) -> None:
        await self.housekeeping.loop()

    # --- stopping ---------------------------------------------------------------------
    async def finished(self) -> None:
        """Until every running attempt has ended (the caller bounds the wait)."""
        while self.running:
            await anyio.sleep(0.05)

    async def hand_back_running(self) -> None:
        """Cancel the attempts still running: their tasks go back to the queue (a
        release, committed by the next flush), for another worker to run."""
        for running in list(self.running.values()):
            running.release()
        with anyio.move_on_after(2):
            while self.running:
                await anyio.sleep(0.01)
        # Async ones that outlived the release (they shielded themselves): the task
        # group's end cancelled them when attempts were its children.
        for running in list(self.running.values()):
            if running.runner is not None:
                running.runner.cancel()
