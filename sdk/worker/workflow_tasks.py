"""The workflow-task path of a worker: polling the workflow streams, running a batch in
rounds (one task per workflow per round), and committing each task's completion (built
by sdk/worker/activations.py: speculation on the event a task carries, or a replay),
which may hand us activity tasks to run at once (eager slots). Activity completions
hand workflow tasks over too (`take_eager`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import anyio
import structlog
from redis.exceptions import RedisError

from engine.reconnect import is_transient
from engine.store import Call
from sdk._definitions import ActivityDefinition, WorkflowDefinition
from sdk.worker.activations import Activations
from sdk.worker.activity_tasks import SUSPECT_WAIT_S, ActivityTasks
from sdk.worker.one_write_steps import OneWriteSteps
from sdk.worker.plumbing import TaskPlumbing, transient
from sdk.worker.task_entry import Fields, TaskEntry
from sdk.worker.timer_wakes import TimerWakes
from sdk.worker.workflow_runner import StickyCache

log = structlog.get_logger("redurable.worker")


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
        held_shards: Callable[[], AbstractSet[int]] | None = None,
    ) -> None:
        self._plumbing = plumbing
        self._store = plumbing.store
        self.cache = cache
        #: Where the activity tasks a completion hands over run.
        self._activities = activities
        #: The activations: speculation, replay, local activities, completion calls.
        self.activations = Activations(
            plumbing, workflows, cache, activities, local_activities=local_activities,
            task_timeout_ms=task_timeout_ms, sticky_ms=sticky_ms)
        self.max_batch = max_batch
        self.task_timeout_ms = task_timeout_ms
        #: Our sticky name ("": no cache), for the unstick calls of workflows let go.
        self._sticky = self.activations.sticky
        #: Wake entries for timers that clients added, read with the tasks.
        self._wakes = TimerWakes(plumbing, activities.server_clock.now_ms, held_shards)
        self._task_streams = [*plumbing.workflow_streams, *plumbing.sticky_workflow_streams]
        self.claim_streams: Sequence[str] = plumbing.workflow_streams
        #: Held but not started: speculations to run the normal way, tasks of a round
        #: that lost its connection, claimed ones while we stop.
        self.backlog: list[TaskEntry] = []
        #: One batch of workflow tasks at a time: the poller's, eager and claimed ones.
        #: fast_acquire: taking it free is no checkpoint (an extra turn of the event
        #: loop per round: most of a round that carries one step); every holder awaits
        #: Redis right after, so nothing is starved.
        self._lock = anyio.Lock(fast_acquire=True)
        #: The poller's last completions, not yet sent: its next read carries them, the
        #: lock held until their replies are applied (_read_committing).
        self._pending: list[tuple[TaskEntry, Call]] | None = None
        #: Eager tasks handed over (take_eager) for the run_now waiting for the lock.
        self._eager_waiting: list[TaskEntry] | None = None
        #: Workflows let go whose unstick calls were lost with their round trip (_untold).
        self._untold_let_go: list[str] = []
        self._one_write_steps = OneWriteSteps(plumbing, self.activations, cache, activities)

    # --- what Liveness claims for us (sdk/worker/liveness.py) --------------------------
    def claim_limit(self, stream: str) -> int | None:
        return None  # a workflow task takes no slot: it runs in the batch it joins

    def suspect_room(self, stream: str) -> int | None:
        # Workflow code can kill a worker too (os._exit, a crash in an extension, memory):
        # the one-suspect rule of activity tasks, the same slot (ActivityTasks).
        return self._activities.suspect_room(stream)

    def adopt(
        self,
        stream: str,
        claimed: list[tuple[bytes, Fields]],
        suspects: AbstractSet[bytes] = frozenset(),
    ) -> None:
        """Run tasks claimed from a dead worker now: the poller may be blocked in a read
        for up to half a second (claiming leaves it no wake-up). `suspects` went down
        with workers before: run alone, in a batch of their own (suspect_room)."""
        plumbing = self._plumbing
        tasks = plumbing.take_over(stream, claimed)
        held = [t for t in tasks if t.msg_id.encode() in suspects]
        tasks = [t for t in tasks if t.msg_id.encode() not in suspects]
        if plumbing.stopping or plumbing.tg is None:
            self.backlog.extend(tasks + held)
            return
        if held:
            plumbing.suspect = (stream, held[0].msg_id)
            plumbing.tg.start_soon(self._run_suspects_when_clear, held)
        if tasks:
            plumbing.count_claimed(tasks)
            plumbing.tg.start_soon(self.run_now, tasks)

    async def _run_suspects_when_clear(self, held: list[TaskEntry]) -> None:
        """Run suspects one by one, each in a batch of its own, once the other tasks
        claimed from dead workers are done (SUSPECT_WAIT_S at most): if one is what
        kills workers, no healthy task claimed with it goes down with it, delivery after
        delivery, into the dead letters (as ActivityTasks._start_suspect_when_clear)."""
        plumbing = self._plumbing
        for task in held:
            plumbing.suspect_waits(task)
        try:
            with anyio.move_on_after(SUSPECT_WAIT_S):
                while plumbing.claimed_in_flight > 0 and not plumbing.stopping:
                    await anyio.sleep(0.01)
            for task in held:
                if not plumbing.suspect_may_start(task):
                    continue  # a stopping worker handed it back
                plumbing.suspect = (task.stream, task.msg_id)
                await self.run_now([task])
        finally:
            if plumbing.suspect in {(t.stream, t.msg_id) for t in held}:
                plumbing.suspect = None

    # --- polling ----------------------------------------------------------------------
    async def poll(self) -> None:
        plumbing = self._plumbing
        per_stream = max(1, self.max_batch // plumbing.keys.shards)
        while not plumbing.stopping:
            tasks, self.backlog = self.backlog, []
            if tasks:
                await self._commit_pending()
            else:
                tasks = self._wakes.take(await self._read_committing(per_stream))
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
            return await self._plumbing.read(self._read_streams(), per_stream)

        def settle(replies: list[Any]) -> None:
            self._pending = None
            try:
                self._settle(pending, replies[:len(pending)], deferred=True)
                self._told(let_go, replies[len(pending):])
            finally:
                self._lock.release()

        let_go, unstick = self._unstick_calls()
        try:
            return await self._plumbing.read(
                self._read_streams(), per_stream, [c for _, c in pending] + unstick, settle)
        finally:
            if self._pending is pending:  # failed before the replies: unknown outcome
                self._untold(let_go)
                self._drop_pending()
                self._lock.release()

    def _read_streams(self) -> list[str]:
        return [*self._task_streams, *self._wakes.read_streams()]

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
        except Exception as exc:
            if not transient(exc):
                raise
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
            except Exception as exc:
                if not transient(exc):
                    raise
                # The connection dropped (or the server said "not now": BUSY) mid-round:
                # whether our calls ran is unknown, and the tasks are still pending on
                # us. Forgotten here they would stay touched (never idle, never
                # claimed) for ever: retry them instead, from a fresh replay (a commit
                # that did land makes the retry stale: acked).
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
            replies = await self._store.call_many(calls)
        except BaseException:
            self._untold(let_go)
            raise
        self._told(let_go, replies)

    def _told(self, let_go: list[str], replies: list[Any]) -> None:
        """The unstick calls' replies. An error reply that says "not now" (a failover,
        a server loading, a slot moving, a script running: nothing ran) is sent again
        with the next round trip, as a lost one is (_untold). Another would fail again:
        logged once, and the workflow's tasks keep coming here for a full replay."""
        again: list[tuple[str, Exception]] = []
        failed: list[tuple[str, Exception]] = []
        for wf_id, reply in zip(let_go, replies, strict=False):
            if isinstance(reply, Exception):
                (again if _not_now(reply) else failed).append((wf_id, reply))
        if again:
            self._untold([wf_id for wf_id, _ in again])
        if failed:
            log.error("workflow_unstick_failed", workflows=[w for w, _ in failed],
                      error=str(failed[0][1]))

    async def _round(self, tasks: list[TaskEntry], defer: bool = False) -> None:
        """Speculative completions and normal starts share the first round trip; the
        normal tasks' completions take a second. `defer`: the last round trip is left
        in self._pending for the poller's next read to carry."""
        plumbing, store = self._plumbing, self._store
        speculative: list[tuple[TaskEntry, Call]] = []
        normal: list[TaskEntry] = []
        self.activations.new_round()
        for task in tasks:
            plumbing.hold(task)
            call = None if task.no_speculation else self.activations.speculate(task)
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
                completions.append((task, await self.activations.activate(task, started)))
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
        if not isinstance(commit, str) and commit.server_ms:
            self._activities.server_clock.observe(commit.server_ms)
        if not isinstance(commit, str) and commit.eager:
            plumbing.stats["eager_activities"] += len(commit.eager)
            self._activities.start(plumbing.screened([TaskEntry(*e) for e in commit.eager]))
        cached = self.cache.get(wf_id, task.get("run_id"))
        if isinstance(commit, str) or commit.closed or commit.close_dropped or cached is None:
            self.cache.evict(wf_id)
            return None
        cached.machine.committed(commit.last_event_id)
        cached.committed_id = commit.last_event_id
        cached.committed_ms = commit.server_ms
        cached.cursor = commit.last_stream_id
        plumbing.stats["workflow_tasks"] += 1
        return None

    # --- one-write activity steps (sdk/worker/one_write_steps.py) ----------------------
    def one_write(self, task: TaskEntry, result: bytes, server_ms: int | None,
                  failure: dict[str, Any] | None = None) -> Call | None:
        """The call that ends an activity attempt (completed, or failed for the last
        time) with its workflow's next step, or None (the plain completion)."""
        return self._one_write_steps.one_write(task, result, server_ms, failure)

    def settle_one_write(self, call: Call, reply: Any) -> tuple[TaskEntry | None, int | None]:
        """Apply a one-write step's reply (OneWriteSteps.settle_one_write)."""
        return self._one_write_steps.settle_one_write(call, reply)


def _not_now(reply: Exception) -> bool:
    """Whether an error reply means "the server cannot run this now" (nothing ran),
    worth sending again: engine/reconnect.py's transient replies (BUSY among them: a
    script or function over its time limit holds the server)."""
    return is_transient(reply)
