"""The workflow-task path of a worker: polling the workflow streams, running a batch in
rounds (one task per workflow per round), speculating on the event a task carries,
activating the replay machine, and committing its commands, which may hand us activity
tasks to run at once (eager slots). Activity completions hand workflow tasks over too
(`take_eager`)."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import anyio
import structlog
from redis.exceptions import RedisError

from engine import commands as cmd
from engine import events as ev
from engine.errors import ApplicationError, to_failure
from engine.events import decode_packed_event
from engine.machine import LOGIC_FLAGS
from engine.store import Call, WorkflowTaskStart
from sdk._definitions import ActivityDefinition, WorkflowDefinition
from sdk.worker.activity_tasks import ActivityTasks
from sdk.worker.local_activities import LocalActivities
from sdk.worker.plumbing import TRANSIENT, TaskPlumbing
from sdk.worker.task_entry import Fields, TaskEntry
from sdk.worker.update_tasks import split_update
from sdk.worker.workflow_runner import CachedRun, StickyCache, new_machine

log = structlog.get_logger("redurable.worker")
#: Workflow task failures no retry can cure: after max_deliveries attempts the task goes
#: to the dead letters (an operator deploys the type or fixes the data, then requeues).
#: Other failures (bugs, non-determinism) retry with backoff until the code is fixed.
POISON_TYPES = frozenset({"WorkflowTypeNotRegistered", "PayloadError", "CodecKeyError"})


class WorkflowTasks:
    """Runs the workflow tasks of one worker (see the module doc)."""

    claims_idle = True

    def __init__(
        self,
        plumbing: TaskPlumbing,
        workflows: dict[str, WorkflowDefinition],
        cache: StickyCache,
        activities: ActivityTasks,
        *,
        local_activities: dict[str, ActivityDefinition],
        max_batch: int,
        task_timeout_ms: int,
        sticky_ms: int = 1000,
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
        self.max_batch = max_batch
        self.task_timeout_ms = task_timeout_ms
        #: Sticky routing: what our completions ask for (docs/design-notes.md "Sticky
        #: workflows"): the workflow's next task on our own stream, to be started
        #: within sticky_ms. No sticky name (no cache): any worker.
        self._sticky = plumbing.sticky or ""
        self.sticky_ms = sticky_ms
        self._read_streams = [*plumbing.workflow_streams, *plumbing.sticky_workflow_streams]
        self.claim_streams: Sequence[str] = plumbing.workflow_streams
        #: Held but not started: speculations to run the normal way, tasks of a round
        #: that lost its connection, claimed ones while we stop.
        self.backlog: list[TaskEntry] = []
        #: One batch of workflow tasks at a time: the poller's, eager and claimed ones.
        #: fast_acquire: taking it free is no checkpoint (an extra turn of the event
        #: loop per round: most of a round that carries one step); every holder awaits
        #: Redis right after, so nothing is starved.
        self._lock = anyio.Lock(fast_acquire=True)
        #: Activity slots this round's completions may still ask for (_eager_slots).
        self._eager_free = 0
        #: The poller's last completions, not yet sent: its next read carries them, the
        #: lock held until their replies are applied (_read_committing).
        self._pending: list[tuple[TaskEntry, Call]] | None = None
        #: Eager tasks handed over (take_eager) for the run_now waiting for the lock.
        self._eager_waiting: list[TaskEntry] | None = None
        #: Workflows let go whose unstick calls were lost with their round trip (_untold).
        self._untold_let_go: list[str] = []

    # --- what Liveness claims for us (sdk/worker/liveness.py) --------------------------
    def claim_limit(self, stream: str) -> int | None:
        return None  # a workflow task takes no slot: it runs in the batch it joins

    def suspect_room(self, stream: str) -> int | None:
        return None  # one suspect at a time holds for activity tasks only (ActivityTasks)

    def adopt(
        self,
        stream: str,
        claimed: list[tuple[bytes, Fields]],
        suspects: AbstractSet[bytes] = frozenset(),
    ) -> None:
        """Run tasks claimed from a dead worker now: the poller may be blocked in a read
        for up to half a second (claiming leaves it no wake-up)."""
        plumbing = self._plumbing
        tasks = plumbing.take_over(stream, claimed)
        if not tasks:
            return
        if plumbing.stopping or plumbing.tg is None:
            self.backlog.extend(tasks)
            return
        plumbing.count_claimed(tasks)
        plumbing.tg.start_soon(self.run_now, tasks)

    # --- polling ----------------------------------------------------------------------
    async def poll(self) -> None:
        plumbing = self._plumbing
        per_stream = max(1, self.max_batch // plumbing.keys.shards)
        while not plumbing.stopping:
            tasks, self.backlog = self.backlog, []
            if tasks:
                await self._commit_pending()
            else:
                tasks = await self._read_committing(per_stream)
            if tasks:
                await self._lock.acquire()
                try:
                    await self._process(tasks, defer=True)
                finally:
                    if self._pending is None:
                        self._lock.release()
        await self._commit_pending()

    async def _read_committing(self, per_stream: int) -> list[TaskEntry]:
        """The next read, with the completions the last batch left (self._pending) sent
        before it in the same round trip: a worker with few workflows runs rounds of one
        or two steps, each a read then a commit, and so pays one round trip per round,
        not two. The lock is let go once their replies are applied, before the read
        answers (it may block)."""
        pending = self._pending
        if pending is None:
            return await self._plumbing.read(self._read_streams, per_stream)

        def settle(replies: list[Any]) -> None:
            self._pending = None
            try:
                self._settle(pending, replies, deferred=True)
            finally:
                self._lock.release()

        let_go, unstick = self._unstick_calls()
        try:
            return await self._plumbing.read(
                self._read_streams, per_stream, [c for _, c in pending] + unstick, settle)
        finally:
            if self._pending is pending:  # failed before the replies: unknown outcome
                self._untold(let_go)
                self._drop_pending()
                self._lock.release()

    async def _commit_pending(self) -> None:
        """Commit what the last batch left without a read (backlog first, stopping)."""
        pending = self._pending
        if pending is None:
            return
        try:
            replies = await self._store.call_many([c for _, c in pending])
            self._pending = None
            self._settle(pending, replies)
            await self._unstick_let_go()
        finally:
            if self._pending is pending:
                self._drop_pending()
            self._lock.release()

    def _drop_pending(self) -> None:
        """The pending completions may or may not have run: retry their tasks from a
        fresh replay (a commit that did land makes the retry stale: acked). The lock
        the batch held is let go by the caller."""
        pending, self._pending = self._pending or [], None
        self._requeue([t for t, _ in pending if self._plumbing.holds(t)])

    async def take_eager(self, tasks: list[TaskEntry]) -> None:
        """Workflow tasks that activity completions handed us: run them now (the
        poller is likely blocked in a read that would not see them)."""
        plumbing = self._plumbing
        plumbing.stats["eager_workflow_tasks"] += len(tasks)
        for task in tasks:
            plumbing.hold(task)  # ours: keep it touched
        if plumbing.stopping or plumbing.tg is None:
            await plumbing.release(tasks)
            return
        if self._eager_waiting is not None:
            # A run of earlier hand-overs waits for the batch lock: these join its round
            # (one pipelined write for all), not a task and a round trip of their own.
            self._eager_waiting.extend(tasks)
            return
        self._eager_waiting = list(tasks)
        plumbing.tg.start_soon(self.run_now, None)

    async def run_now(self, tasks: list[TaskEntry] | None) -> None:
        """Workflow tasks handed over outside the poller (claimed; None: the eager ones
        take_eager gathered until the lock was ours)."""
        try:
            async with self._lock:
                if tasks is None:
                    tasks, self._eager_waiting = self._eager_waiting or [], None
                await self._process(tasks)
                # Speculations to run the normal way: now, not once the poller's read
                # returns (idle, it blocks for seconds: sdk/worker/plumbing.py).
                while self.backlog and not self._plumbing.stopping:
                    more, self.backlog = self.backlog, []
                    await self._process(more)
        except TRANSIENT as exc:
            # Still pending on us: the poller retries them from the backlog, where
            # _process put back the unfinished ones.
            log.warning("redis_unavailable", loop="eager_workflow_tasks", error=str(exc))
        finally:
            self._plumbing.claimed_done(tasks or ())

    async def finished(self) -> None:
        """Until the batch in hand is committed (the caller bounds the wait)."""
        async with self._lock:
            pass

    # --- a batch, in rounds -----------------------------------------------------------
    async def _process(self, tasks: list[TaskEntry], defer: bool = False) -> None:
        """`defer` (the poller): the last round's completions are left in self._pending,
        the lock held, for the next read to carry (_read_committing)."""
        # One task per workflow per round: two for the same workflow must not interleave.
        rounds: list[list[TaskEntry]] = []
        # A workflow's n-th task in this batch goes to round n.
        seen: dict[bytes, int] = {}
        for task in tasks:
            wf_id = task.fields[b"workflow_id"]
            index = seen.get(wf_id, 0)
            seen[wf_id] = index + 1
            if index == len(rounds):
                rounds.append([])
            rounds[index].append(task)
        for i, r in enumerate(rounds):
            try:
                last = defer and i == len(rounds) - 1
                await self._round(r, last)
                if self._pending is None:  # else the next read carries them
                    await self._unstick_let_go()
            except TRANSIENT:
                # The connection dropped mid-round: whether our calls ran is unknown, and
                # the tasks are still pending on us. Forgotten here they would stay
                # touched (never idle, never claimed) for ever: retry them instead, from
                # a fresh replay (a commit that did land makes the retry stale: acked).
                unfinished = [t for t in r if self._plumbing.holds(t)]
                self._requeue(unfinished + [t for later in rounds[i + 1:] for t in later])
                raise

    def _requeue(self, tasks: list[TaskEntry]) -> None:
        for task in tasks:
            self.cache.evict(task.get("workflow_id"))
            task.no_speculation = True
            self.backlog.append(task)

    def _unstick_calls(self) -> tuple[list[str], list[Call]]:
        """Tell Redis which workflows the cache let go of (to make room): their next
        task goes to any worker, not to us for a full replay. Returns the workflows
        and their calls (the workflows go back to _untold if the calls are lost)."""
        let_go, self.cache.let_go = self.cache.let_go, []
        if not self._sticky:
            return [], []
        self._plumbing.stats["cache_evictions"] += len(let_go)
        let_go, self._untold_let_go = self._untold_let_go + let_go, []
        return let_go, [self._store.unstick_call(wf_id, self._sticky) for wf_id in let_go]

    def _untold(self, let_go: list[str]) -> None:
        """The round trip that carried these workflows' unstick calls failed (whether
        they ran is unknown; rd_unstick runs twice harmlessly): the next one carries
        them again, else Redis keeps sending their tasks here for full replays. One
        cached again since is ours again: left out."""
        self._untold_let_go = list(dict.fromkeys(
            wf_id for wf_id in self._untold_let_go + let_go if wf_id not in self.cache))

    async def _unstick_let_go(self) -> None:
        let_go, calls = self._unstick_calls()
        if not calls:
            return
        try:
            await self._store.call_many(calls)
        except BaseException:
            self._untold(let_go)
            raise

    async def _round(self, tasks: list[TaskEntry], defer: bool = False) -> None:
        """Speculative completions and normal starts share the first round trip; the
        normal tasks' completions take a second. `defer`: the last round trip is left
        in self._pending for the poller's next read to carry."""
        plumbing, store = self._plumbing, self._store
        speculative: list[tuple[TaskEntry, Call]] = []
        normal: list[TaskEntry] = []
        self._eager_free = max(0, self._activities.free_slots())
        for task in tasks:
            plumbing.hold(task)
            call = None if task.no_speculation else self._speculate(task)
            if call is None:
                normal.append(task)
            else:
                speculative.append((task, call))
        if defer and not normal:
            self._pending = speculative
            return
        start_calls = []
        for task in normal:
            cached = self.cache.get(task.get("workflow_id"), task.get("run_id"))
            start_calls.append(store.wft_start_call(
                task.get("workflow_id"), task.get("run_id"), task.get("epoch"), task.msg_id,
                task.stream, cached.cursor if cached else None, self.task_timeout_ms))
        replies = await store.call_many([c for _, c in speculative] + start_calls)
        self._settle(speculative, replies)
        completions: list[tuple[TaskEntry, Call]] = []
        for task, reply in zip(normal, replies[len(speculative):], strict=True):
            try:
                started = store.parse_wft_start(reply)
            except RedisError as exc:
                log.error("workflow_task_start_failed", workflow_id=task.get("workflow_id"),
                          error=str(exc))
                plumbing.let_go(task)
                continue
            if started is None:
                plumbing.let_go(task)
                plumbing.stats["stale_workflow_tasks"] += 1
                continue
            try:
                completions.append((task, await self._activate(task, started)))
            except RedisError as exc:
                # Left pending: it goes idle and is claimed again (by us or another).
                log.error("workflow_task_error", workflow_id=task.get("workflow_id"),
                          error=str(exc))
                plumbing.let_go(task)
                self.cache.evict(task.get("workflow_id"))
                continue
        if defer and completions:
            self._pending = completions
            return
        self._settle(completions, await store.call_many([c for _, c in completions]))

    def _settle(
        self, pairs: list[tuple[TaskEntry, Call]], replies: list[Any], deferred: bool = False
    ) -> None:
        """Apply completions' replies. A speculation that must run the normal way is
        still ours: it goes to the backlog, or (`deferred`: the poller is in a read that
        may block) runs at once."""
        retries = []
        for (task, call), reply in zip(pairs, replies, strict=False):
            if self._finish(task, call, reply) == "retry":
                task.no_speculation = True
                retries.append(task)
        tg = self._plumbing.tg
        if retries and deferred and tg is not None and not self._plumbing.stopping:
            tg.start_soon(self.run_now, retries)
        else:
            self.backlog.extend(retries)

    def _speculate(self, task: TaskEntry) -> Call | None:
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
        cached = self.cache.get(wf_id, run_id)
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
            cached.machine.now_ms,  # the time the code saw (see _activate)
            LOGIC_FLAGS, commands, seen_next_event_id=event.event_id + len(inputs),
            eager_slots=self._eager_slots(commands), sticky=self._sticky,
            sticky_ms=self.sticky_ms)

    def _finish(self, task: TaskEntry, call: Call, reply: Any) -> str | None:
        """Apply a completion's reply to the cache; returns "retry" for a speculation
        that must run the normal way."""
        plumbing = self._plumbing
        wf_id = task.get("workflow_id")
        if call.function != "rd_wft_complete":  # a failure report
            plumbing.let_go(task)
            return None
        try:
            commit = self._store.parse_wft_complete(reply)
        except RedisError as exc:
            log.error("workflow_task_commit_failed", workflow_id=wf_id, error=str(exc))
            plumbing.let_go(task)
            self.cache.evict(wf_id)
            return None
        if commit == "retry":
            self.cache.evict(wf_id)  # its machine ran ahead of what was written
            plumbing.stats["speculation_retries"] += 1
            return "retry"
        plumbing.let_go(task)
        if not isinstance(commit, str) and commit.eager:
            plumbing.stats["eager_activities"] += len(commit.eager)
            self._activities.start(plumbing.screened([TaskEntry(*e) for e in commit.eager]))
        cached = self.cache.get(wf_id, task.get("run_id"))
        if isinstance(commit, str) or commit.closed or commit.close_dropped or cached is None:
            self.cache.evict(wf_id)
            return None
        cached.machine.committed(commit.last_event_id)
        cached.cursor = commit.last_stream_id
        plumbing.stats["workflow_tasks"] += 1
        return None

    async def _activate(self, task: TaskEntry, started: WorkflowTaskStart) -> Call:
        """Run one activation; returns the completion (or failure) call to commit."""
        plumbing, store = self._plumbing, self._store
        wf_id, run_id = task.get("workflow_id"), task.get("run_id")
        epoch = task.get("epoch")
        entries = started.entries
        cached = self.cache.get(wf_id, run_id)
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
            sticky=self._sticky,
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
        granted = min(len(types), self._eager_free)
        self._eager_free -= granted
        return granted
