"""Worker: polls one task queue's workflow, activity and query streams, fires timers,
keeps its in-flight tasks from being claimed, and claims those of dead workers."""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import commands as cmd
from engine import events as ev
from engine.errors import ApplicationError, PayloadError, to_failure
from engine.events import decode_packed_event
from engine.keys import GROUP
from engine.machine import LOGIC_FLAGS
from engine.store import Call, Store, WorkflowTaskStart
from engine.validate import check_task_queue
from sdk import activity as activity_api
from sdk._definitions import (
    ActivityDefinition,
    WorkflowDefinition,
    activity_definition,
    workflow_definition,
)
from sdk.client.client import Client
from sdk.worker.activity_attempt import RunningActivity, call_activity
from sdk.worker.liveness import Liveness
from sdk.worker.queries import QueryAnswerer
from sdk.worker.task_entry import Fields, TaskEntry, malformed
from sdk.worker.workflow_runner import CachedRun, StickyCache, new_machine

log = structlog.get_logger("redurable.worker")
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)
#: Activities that finish within this never pay for a start transition.
LAZY_START_S = 0.05
#: How long a suspect task waits for the other claimed tasks to be done.
SUSPECT_WAIT_S = 5.0
#: How long a poller's read blocks: the longest a stopping worker waits for its reads.
READ_BLOCK_MS = 500
#: Workflow task failures no retry can cure: after max_deliveries attempts the task goes
#: to the dead letters (an operator deploys the type or fixes the data, then requeues).
#: Other failures (bugs, non-determinism) retry with backoff until the code is fixed.
POISON_TYPES = frozenset({"WorkflowTypeNotRegistered", "PayloadError", "CodecKeyError"})
#: The worker's name for a held task entry (sdk/worker/task_entry.py).
_Task = TaskEntry


class Worker:
    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        max_concurrent_activities: int = 100,
        max_workflow_batch: int = 64,
        identity: str | None = None,
        liveness_timeout: float = 5.0,
        workflow_task_timeout: float = 10.0,
        graceful_shutdown_timeout: float = 10.0,
        max_cached_workflows: int = 10000,
        max_deliveries: int = 5,
        timer_interval: float = 0.05,
        handle_signals: bool = True,
    ) -> None:
        self.client = client
        self.store: Store = client.store
        self.keys = client.keys
        self.task_queue = check_task_queue(task_queue)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._workflows: dict[str, WorkflowDefinition] = {}
        for w in workflows:
            d = workflow_definition(w)
            self._workflows[d.name] = d
        self._activities: dict[str, ActivityDefinition] = {}
        for a in activities:
            ad = activity_definition(a)
            self._activities[ad.name] = ad
        if not self._workflows and not self._activities:
            raise ValueError("a worker needs at least one workflow or activity")
        self.max_concurrent_activities = max_concurrent_activities
        self.max_workflow_batch = max_workflow_batch
        self.liveness_ms = int(liveness_timeout * 1000)
        self.workflow_task_timeout_ms = int(workflow_task_timeout * 1000)
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.max_deliveries = max_deliveries
        self.timer_interval = timer_interval
        self.handle_signals = handle_signals
        self.cache = StickyCache(max_cached_workflows)
        shards = range(self.keys.shards)
        self._wf_streams = [self.keys.workflow_tasks(s, self.task_queue) for s in shards]
        self._act_streams = [self.keys.activity_tasks(s, self.task_queue) for s in shards]
        self._shard_of_stream = {s: i for i, s in enumerate(self._wf_streams)}
        self._shard_of_stream.update({s: i for i, s in enumerate(self._act_streams)})
        self._query_stream = self.keys.queries(self.task_queue)
        self._in_flight: dict[str, set[str]] = defaultdict(set)
        # Keyed by (stream, entry id): entry ids are only unique within one stream.
        self._running: dict[tuple[str, str], RunningActivity] = {}
        self._wf_backlog: list[_Task] = []
        self._act_backlog: list[_Task] = []
        self._completions: list[Call] = []
        self._completion_ready = anyio.Event()
        #: One batch of workflow tasks at a time: the poller's and eager ones.
        self._wf_lock = anyio.Lock()
        self._activity_slot_free = anyio.Event()
        self._stopping = False
        self._stop_requested = anyio.Event()
        #: Pollers still reading (set by each as it ends): a stop lets their reads end
        #: by themselves (they block <= 0.5 s) rather than cancel them (_drain).
        self._pollers_running: set[str] = set()
        self._pollers_done = anyio.Event()
        self._eager_free = 0
        #: The task delivered more than once that we hold, if any (_suspect_room).
        self._suspect: tuple[str, str] | None = None
        #: Tasks claimed from dead workers and not yet done (_start_suspect_when_clear).
        self._claimed_in_flight = 0
        self._tg: TaskGroup | None = None
        self.stats: dict[str, int] = defaultdict(int)
        self.liveness = Liveness(
            client,
            self.task_queue,
            self.identity,
            liveness_ms=self.liveness_ms,
            max_deliveries=max_deliveries,
            all_streams=[*self._wf_streams, *self._act_streams],
            claimable_streams=(self._wf_streams if self._workflows else [])
            + (self._act_streams if self._activities else []),
            query_stream=self._query_stream if self._workflows else None,
            shard_of_stream=self._shard_of_stream,
            in_flight=self._in_flight,
            worker_info=lambda: {
                "workflows": {n: sorted(d.queries) for n, d in self._workflows.items()},
                "signals": {n: sorted(d.signals) for n, d in self._workflows.items()},
                "activities": sorted(self._activities),
            },
            claim_limit=self._claim_limit,
            adopt=self._adopt,
            suspect_room=self._suspect_room,
            stopping=lambda: self._stopping,
        )
        self._queries = QueryAnswerer(
            client, self.task_queue, self._workflows, self.cache, self.liveness.server_ms
        )

    # --- lifecycle --------------------------------------------------------------------
    def shutdown(self) -> None:
        """Ask `run()` to stop polling, finish or hand back in-flight work, and return."""
        self._stop_requested.set()

    async def run(self) -> None:
        """Run until `shutdown()`, SIGTERM/SIGINT, or cancellation; drains gracefully."""
        await self.store.ensure_groups(self.task_queue)
        await self.liveness.presence.subscribe()
        await self.liveness.beat()
        log.info(
            "worker_started",
            worker=self.identity,
            task_queue=self.task_queue,
            workflows=sorted(self._workflows),
            activities=sorted(self._activities),
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._guard, self.liveness.beat_loop)
                tg.start_soon(self.liveness.presence.hold)
                tg.start_soon(self._guard, self.liveness.death_watch_loop)
                tg.start_soon(self._guard, self._timer_loop)
                if self._workflows:
                    self._start_poller(tg, self._workflow_loop)
                    self._start_poller(tg, self._query_loop)
                if self._activities:
                    self._start_poller(tg, self._activity_loop)
                    tg.start_soon(self._guard, self._completion_loop)
                    tg.start_soon(self._guard, self._heartbeat_loop)
                if self.handle_signals:
                    tg.start_soon(self._signal_loop)
                try:
                    await self._stop_requested.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._drain()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.client.redis.zrem(self.keys.workers(self.task_queue), self.identity)
                    await self.client.redis.hdel(
                        self.keys.worker_info(self.task_queue), self.identity
                    )
                except RedisError:
                    pass
            log.info("worker_stopped", worker=self.identity)

    def _start_poller(self, tg: TaskGroup, loop: Callable[[], Any]) -> None:
        self._pollers_running.add(loop.__name__)

        async def poller() -> None:
            try:
                await self._guard(loop)
            finally:
                self._pollers_running.discard(loop.__name__)
                if not self._pollers_running:
                    self._pollers_done.set()

        tg.start_soon(poller)

    async def _drain(self) -> None:
        self._stopping = True
        # Let the pollers' reads end by themselves (they block <= READ_BLOCK_MS) and the
        # workflow batch in hand commit. A read cancelled mid-way may have been served
        # already: its entries would be pending on us, unseen (_hand_back_unseen).
        with anyio.move_on_after(max(self.graceful_shutdown_timeout, 2 * READ_BLOCK_MS / 1000)):
            if self._pollers_running:
                await self._pollers_done.wait()
        with anyio.move_on_after(self.graceful_shutdown_timeout):
            async with self._wf_lock:  # and eager workflow tasks (_flush_completions)
                pass
            while self._running:
                await anyio.sleep(0.05)
        for running in list(self._running.values()):
            running.releasing = True
            running.scope.cancel()
        with anyio.move_on_after(2):
            while self._running:
                await anyio.sleep(0.01)
        # Held but never started (claimed while the slots were full, speculations to
        # retry, ...): hand them back too, or they wait for the idle-time claim.
        left = [*self._wf_backlog, *self._act_backlog]
        self._wf_backlog, self._act_backlog = [], []
        self._completions.extend(self.store.release_call(t.stream, t.msg_id) for t in left)
        await self._flush_completions()
        with anyio.move_on_after(2):
            await self._hand_back_unseen()

    async def _hand_back_unseen(self) -> None:
        """Entries the server delivered to us that we never took in hand: a read whose
        reply was lost with its connection, or cut short as we stopped. Nobody else reads
        for our consumer name, and a worker that stops is not claimed from: left there,
        a query request would go unanswered and a task would wait for the liveness
        timeout. Tasks go back to their queue; query requests are answered here."""
        streams = [*self._wf_streams, *self._act_streams, self._query_stream]
        redis = self.client.redis
        try:
            pipe = redis.pipeline(transaction=False)
            for stream in streams:
                pipe.xpending_range(stream, GROUP, "-", "+", 1000, consumername=self.identity)
            pending: list[Any] = await pipe.execute(raise_on_error=False)
            releases: list[Call] = []
            for stream, rows in zip(streams, pending, strict=True):
                if isinstance(rows, Exception):
                    continue
                ids = [row["message_id"].decode() for row in rows]
                ids = [i for i in ids if i not in self._in_flight[stream]]
                if not ids:
                    continue
                log.info("unseen_entries_handed_back", stream=stream, entries=len(ids))
                if stream != self._query_stream:
                    releases.extend(self.store.release_call(stream, i) for i in ids)
                    continue
                claimed: Any = await redis.xclaim(stream, GROUP, self.identity, 0, ids)
                for sid, fields in claimed:
                    if fields:
                        await self._queries.answer(_Task(stream, sid.decode(), fields))
            if releases:
                await self.store.call_many(releases)
        except (RedisError, OSError) as exc:  # left pending: claimed when found idle
            log.warning("hand_back_failed", error=str(exc))

    async def _guard(self, loop: Callable[[], Any]) -> None:
        """Keep a loop alive across transient Redis errors (with a short pause)."""
        while not self._stopping:
            try:
                await loop()
                return
            except _TRANSIENT as exc:
                log.warning("redis_unavailable", loop=loop.__name__, error=str(exc))
                await anyio.sleep(0.5)

    async def _signal_loop(self) -> None:
        try:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    log.info("worker_shutdown_requested", worker=self.identity)
                    self.shutdown()
                    return
        except (ValueError, RuntimeError):  # not the main thread: the owner stops us
            return

    # --- claiming (sdk/worker/liveness.py finds what to claim) -----------------------------
    def _claimed_done(self, tasks: Iterable[_Task]) -> None:
        for task in tasks:
            if task.claimed:
                task.claimed = False
                self._claimed_in_flight -= 1

    async def _start_suspect_when_clear(self, task: _Task) -> None:
        """Run a suspect once the other tasks claimed from dead workers are done (for at
        most SUSPECT_WAIT_S): if it is what kills workers, they must not go down with
        it, delivery after delivery, into the dead letters."""
        with anyio.move_on_after(SUSPECT_WAIT_S):
            while self._claimed_in_flight > 0:
                await anyio.sleep(0.01)
        if self._stopping or len(self._running) >= self.max_concurrent_activities:
            self._act_backlog.append(task)
        else:
            self._start_activities([task])

    def _suspect_room(self, stream: str) -> int | None:
        """Activity tasks that went down with a worker before may be what kills workers:
        we hold one of them at a time, so that a healthy one is not in flight, delivery
        after delivery, on every worker a poison one kills (and dead-lettered with it)."""
        if stream not in self._act_streams:
            return None
        return 0 if self._suspect is not None else 1

    def _claim_limit(self, stream: str) -> int | None:
        """Claim only what we have slots for: claimed tasks are ours until we run them
        (see _adopt), and a busy worker must not hoard a dead one's work."""
        if stream not in self._act_streams:
            return None
        return self.max_concurrent_activities - len(self._running) - len(self._act_backlog)

    def _adopt(
        self,
        stream: str,
        claimed: list[tuple[bytes, Fields]],
        suspects: AbstractSet[bytes] = frozenset(),
    ) -> None:
        """Run tasks claimed from a dead worker now: the pollers may be blocked in a
        read for up to half a second (claiming leaves them no wake-up). `suspects` went
        down with workers before: we hold one at a time (see _suspect_room)."""
        if stream == self._query_stream:
            # A dead worker's unanswered query requests: answered (or, expired, dropped)
            # by QueryAnswerer, which acknowledges each one.
            for sid, fields in claimed:
                if self._tg is not None and not self._stopping:
                    self.stats["queries_claimed"] += 1
                    query = _Task(stream, sid.decode(), fields)
                    self._tg.start_soon(self._answer_claimed_query, query)
            return
        tasks: list[_Task] = []
        held = self._in_flight[stream]
        for sid, fields in claimed:
            task = _Task(stream, sid.decode(), fields)
            problem = self._malformed(stream, fields)
            if problem is not None:
                assert self._tg is not None
                self._tg.start_soon(self._dead_letter, [self._dead_letter_call(task, problem)])
                continue
            if task.msg_id in held:
                continue  # ours already (a late touch let it go idle): it is in hand
            # Touched from now on. Left untouched while it waited in a backlog (for a
            # free activity slot), it went idle, was claimed again and again, started
            # twice, and dead-lettered as poison after max_deliveries rounds.
            held.add(task.msg_id)
            self.stats["claimed"] += 1
            log.info("task_claimed", stream=stream, message_id=task.msg_id)
            if sid in suspects and stream in self._act_streams:
                self._suspect = (stream, task.msg_id)  # until its attempt ends
                if self._tg is not None and not self._stopping:
                    self._tg.start_soon(self._start_suspect_when_clear, task)
                    continue
            else:
                task.claimed = True
                self._claimed_in_flight += 1
            tasks.append(task)
        if not tasks:
            return
        if self._stopping or self._tg is None:
            backlog = self._wf_backlog if stream in self._wf_streams else self._act_backlog
            self._claimed_done(tasks)
            backlog.extend(tasks)
        elif stream in self._wf_streams:
            self._tg.start_soon(self._run_workflow_tasks_now, tasks)
        else:
            # Within our free slots (_claim_limit), counted before the claim's round trip:
            # the ones filled meanwhile (the poller, the other claim loop) wait.
            free = max(0, self.max_concurrent_activities - len(self._running))
            self._start_activities(tasks[:free])
            self._act_backlog.extend(tasks[free:])

    async def _timer_loop(self) -> None:
        while not self._stopping:
            await self.store.fire_timers()
            await anyio.sleep(self.timer_interval)

    # --- workflow tasks ---------------------------------------------------------------
    async def _read(self, streams: Iterable[str], count: int, block_ms: int) -> list[_Task]:
        started = time.monotonic()
        reply: Any = await self.client.redis.xreadgroup(
            GROUP, self.identity, dict.fromkeys(streams, ">"), count=count, block=block_ms
        )
        if not reply and time.monotonic() - started < 0.005:
            # A server that does not block (fakeredis): do not spin on it.
            await anyio.sleep(0.005)
        tasks = []
        malformed: list[Call] = []
        for stream, entries in reply or []:
            name = stream.decode()
            for sid, fields in entries:
                task = _Task(name, sid.decode(), fields)
                problem = self._malformed(name, fields)
                if problem is None:
                    tasks.append(task)
                else:
                    malformed.append(self._dead_letter_call(task, problem))
        if malformed:
            await self._dead_letter(malformed)
        return tasks

    def _screened(self, tasks: list[_Task]) -> list[_Task]:
        """The tasks that are well-formed; the others are dead-lettered. For entries
        handed over eagerly: the eager read takes the stream's next new entry, which
        is not always the one just queued (a malformed one may come first)."""
        bad = [(t, p) for t in tasks if (p := self._malformed(t.stream, t.fields))]
        if bad:
            assert self._tg is not None
            self._tg.start_soon(self._dead_letter, [self._dead_letter_call(t, p) for t, p in bad])
        return [t for t in tasks if all(t is not b for b, _ in bad)]

    def _dead_letter_call(self, task: _Task, problem: str) -> Call:
        log.error("task_dead_lettered", stream=task.stream, message_id=task.msg_id,
                  reason=problem)
        return self.store.dead_letter_call(
            task.stream, self._shard_of_stream.get(task.stream, 0), task.msg_id, problem)

    async def _dead_letter(self, calls: list[Call]) -> None:
        """Dead-letter malformed entries at once: every delivery would fail (or kill a
        loop) alike. Not written (Redis away): they stay pending and come back claimed."""
        try:
            await self.store.call_many(calls)
        except (RedisError, OSError) as exc:
            log.warning("dead_letter_failed", error=str(exc))
            return
        self.stats["dead_lettered"] += len(calls)

    def _malformed(self, stream: str, fields: Fields) -> str | None:
        """Why a task entry cannot be processed, or None (query requests are checked
        where they are answered)."""
        if stream not in self._shard_of_stream:
            return None
        return malformed(stream.endswith(":wf"), fields)

    async def _workflow_loop(self) -> None:
        per_stream = max(1, self.max_workflow_batch // self.keys.shards)
        while not self._stopping:
            tasks, self._wf_backlog = self._wf_backlog, []
            if not tasks:
                tasks = await self._read(self._wf_streams, per_stream, READ_BLOCK_MS)
            if tasks:
                async with self._wf_lock:
                    await self._process_workflow_tasks(tasks)

    async def _process_workflow_tasks(self, tasks: list[_Task]) -> None:
        # One task per workflow per round: two for the same workflow must not interleave.
        rounds: list[list[_Task]] = []
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
                await self._workflow_round(r)
            except _TRANSIENT:
                # The connection dropped mid-round: whether our calls ran is unknown, and
                # the tasks are still pending on us. Forgotten here they would stay
                # touched (never idle, never claimed) for ever: retry them instead, from
                # a fresh replay (a commit that did land makes the retry stale: acked).
                unfinished = [t for t in r if t.msg_id in self._in_flight[t.stream]]
                for task in unfinished + [t for later in rounds[i + 1:] for t in later]:
                    self.cache.evict(task.get("workflow_id"))
                    task.no_speculation = True
                    self._wf_backlog.append(task)
                raise

    async def _workflow_round(self, tasks: list[_Task]) -> None:
        """Speculative completions and normal starts share the first round trip; the
        normal tasks' completions take a second."""
        speculative: list[tuple[_Task, Call]] = []
        normal: list[_Task] = []
        self._eager_free = max(0, self.max_concurrent_activities - len(self._running)
                               - len(self._act_backlog))
        for task in tasks:
            self._in_flight[task.stream].add(task.msg_id)
            call = None if task.no_speculation else self._speculate(task)
            if call is None:
                normal.append(task)
            else:
                speculative.append((task, call))
        start_calls = []
        for task in normal:
            cached = self.cache.get(task.get("workflow_id"), task.get("run_id"))
            start_calls.append(self.store.wft_start_call(
                task.get("workflow_id"), task.get("run_id"), task.get("epoch"), task.msg_id,
                task.stream, cached.cursor if cached else None, self.workflow_task_timeout_ms))
        replies = await self.store.call_many([c for _, c in speculative] + start_calls)
        for (task, call), reply in zip(speculative, replies, strict=False):
            if self._finish(task, call, reply) == "retry":
                task.no_speculation = True
                self._wf_backlog.append(task)  # still ours: run it the normal way next
        completions: list[Call] = []
        done: list[_Task] = []
        for task, reply in zip(normal, replies[len(speculative):], strict=True):
            try:
                started = self.store.parse_wft_start(reply)
            except RedisError as exc:
                log.error("workflow_task_start_failed", workflow_id=task.get("workflow_id"),
                          error=str(exc))
                self._in_flight[task.stream].discard(task.msg_id)
                continue
            if started is None:
                self._in_flight[task.stream].discard(task.msg_id)
                self.stats["stale_workflow_tasks"] += 1
                continue
            try:
                completions.append(await self._activate(task, started))
            except RedisError as exc:
                # Left pending: it goes idle and is claimed again (by us or another).
                log.error("workflow_task_error", workflow_id=task.get("workflow_id"),
                          error=str(exc))
                self._in_flight[task.stream].discard(task.msg_id)
                self.cache.evict(task.get("workflow_id"))
                continue
            done.append(task)
        commits = await self.store.call_many(completions)
        for task, call, reply in zip(done, completions, commits, strict=True):
            self._finish(task, call, reply)

    def _speculate(self, task: _Task) -> Call | None:
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
        if cached is None:
            if not isinstance(event, ev.WorkflowExecutionStarted) or event.event_id != 1:
                return None
            definition = self._workflows.get(event.workflow_type)
            if definition is None:
                return None
            cached = CachedRun(new_machine(definition, wf_id, run_id, event.task_queue,
                                           self.client.codec))
            self.cache.put(wf_id, cached)
        elif cached.machine.last_event_id + 1 != event.event_id:
            return None
        try:
            commands = cached.machine.activate([event], event.timestamp)
        except Exception:  # the normal path replays and records the failure
            self.cache.evict(wf_id)
            return None
        return self.store.wft_complete_call(
            wf_id, run_id, task.get("epoch"), None, task.msg_id, task.stream, self.identity,
            cached.machine.now_ms,  # the time the code saw (see _activate)
            LOGIC_FLAGS, commands, seen_next_event_id=event.event_id + 1,
            eager_slots=self._eager_slots(commands))

    def _finish(self, task: _Task, call: Call, reply: Any) -> str | None:
        """Apply a completion's reply to the cache; returns "retry" for a speculation
        that must run the normal way."""
        wf_id = task.get("workflow_id")
        if call.function != "rd_wft_complete":  # a failure report
            self._in_flight[task.stream].discard(task.msg_id)
            return None
        try:
            commit = self.store.parse_wft_complete(reply)
        except RedisError as exc:
            log.error("workflow_task_commit_failed", workflow_id=wf_id, error=str(exc))
            self._in_flight[task.stream].discard(task.msg_id)
            self.cache.evict(wf_id)
            return None
        if commit == "retry":
            self.cache.evict(wf_id)  # its machine ran ahead of what was written
            self.stats["speculation_retries"] += 1
            return "retry"
        self._in_flight[task.stream].discard(task.msg_id)
        if not isinstance(commit, str) and commit.eager:
            self.stats["eager_activities"] += len(commit.eager)
            self._start_activities(self._screened([_Task(*e) for e in commit.eager]))
        cached = self.cache.get(wf_id, task.get("run_id"))
        if isinstance(commit, str) or commit.closed or commit.close_dropped or cached is None:
            self.cache.evict(wf_id)
            return None
        cached.machine.committed(commit.last_event_id)
        cached.cursor = commit.last_stream_id
        self.stats["workflow_tasks"] += 1
        return None

    async def _activate(self, task: _Task, started: WorkflowTaskStart) -> Call:
        """Run one activation; returns the completion (or failure) call to commit."""
        wf_id, run_id = task.get("workflow_id"), task.get("run_id")
        epoch = task.get("epoch")
        entries = started.entries
        cached = self.cache.get(wf_id, run_id)
        if (
            cached is not None
            and entries
            and (entries[0][1].event_id != cached.machine.last_event_id + 1)
        ):
            self.cache.evict(wf_id)
            cached = None
            entries = await self.store.read_history(wf_id)
        try:
            if cached is None:
                if not entries or not isinstance(entries[0][1], ev.WorkflowExecutionStarted):
                    entries = await self.store.read_history(wf_id)
                first = entries[0][1]
                assert isinstance(first, ev.WorkflowExecutionStarted)
                definition = self._workflows.get(first.workflow_type)
                if definition is None:
                    raise ApplicationError(
                        f"workflow type {first.workflow_type!r} is not registered on worker "
                        f"{self.identity} (registered: {', '.join(sorted(self._workflows))})",
                        type="WorkflowTypeNotRegistered",
                    )
                machine = new_machine(
                    definition, wf_id, run_id, first.task_queue, self.client.codec, started.attempt
                )
                cached = CachedRun(machine)
                self.cache.put(wf_id, cached)
            commands = cached.machine.activate([e for _, e in entries], started.now_ms)
        except Exception as exc:
            self.cache.evict(wf_id)
            failure = to_failure(exc)
            failure["attempt"] = started.attempt
            failure["worker"] = self.identity
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
            self.stats["workflow_task_failures"] += 1
            reason = None
            if failure["type"] in POISON_TYPES and started.attempt >= self.max_deliveries:
                reason = f"{failure['message']} (workflow task failed {started.attempt} times)"
                log.error("workflow_task_dead_lettered", workflow_id=wf_id, reason=reason)
                self.stats["dead_lettered"] += 1
            return self.store.wft_fail_call(
                wf_id, run_id, epoch, started.token, task.msg_id, task.stream, failure, reason
            )
        return self.store.wft_complete_call(
            wf_id,
            run_id,
            epoch,
            started.token,
            task.msg_id,
            task.stream,
            self.identity,
            # The time the code saw (the machine never lets it go back), not the
            # server's: recording a server clock that stepped back made replays see
            # another workflow.now() than the live run did.
            cached.machine.now_ms,
            LOGIC_FLAGS,
            commands,
            eager_slots=self._eager_slots(commands),
        )

    def _eager_slots(self, commands: list[Any]) -> int:
        """How many of this completion's activity tasks to take at once: only when we
        run every type it schedules, and only from the free slots not yet promised."""
        types = [c.activity_type for c in commands if isinstance(c, cmd.ScheduleActivity)]
        if not types or any(t not in self._activities for t in types) or self._stopping:
            return 0
        granted = min(len(types), self._eager_free)
        self._eager_free -= granted
        return granted

    # --- queries ----------------------------------------------------------------------
    async def _answer_claimed_query(self, task: _Task) -> None:
        try:
            await self._queries.answer(task)
        except (RedisError, OSError) as exc:  # left pending: the client times out
            log.warning("claimed_query_failed", error=str(exc))

    async def _query_loop(self) -> None:
        stream = self._query_stream
        while not self._stopping:
            for task in await self._read([stream], 16, READ_BLOCK_MS):
                await self._queries.answer(task)

    # --- activities -------------------------------------------------------------------
    async def _activity_loop(self) -> None:
        while not self._stopping:
            free = self.max_concurrent_activities - len(self._running)
            if free <= 0:
                self._activity_slot_free = anyio.Event()
                with anyio.move_on_after(0.5):
                    await self._activity_slot_free.wait()
                continue
            tasks, self._act_backlog = self._act_backlog[:free], self._act_backlog[free:]
            if not tasks:
                per_stream = max(1, free // self.keys.shards)
                tasks = await self._read(self._act_streams, per_stream, READ_BLOCK_MS)
            if tasks and self._stopping:  # read as we stopped: handed back by _drain
                self._act_backlog.extend(tasks)
            elif tasks:
                self._start_activities(tasks)

    def _start_activities(self, tasks: list[_Task]) -> None:
        """Run each attempt at once. The start mark (which arms start-to-close and
        heartbeat timeouts) is sent later by the housekeeping loop, and only for
        attempts still running by then: most activities finish first and save it."""
        assert self._tg is not None
        now = time.monotonic()
        for task in tasks:
            self._in_flight[task.stream].add(task.msg_id)
            timeouts = [int(task.fields.get(k, b"0") or 0)
                        for k in (b"start_to_close_ms", b"heartbeat_ms")]
            short = any(0 < t < 4000 * LAZY_START_S for t in timeouts)
            running = RunningActivity(task, self._activity_context(task))
            running.mark_at = now if short else now + LAZY_START_S
            self._running[(task.stream, task.msg_id)] = running
            self._tg.start_soon(self._run_activity, running)

    def _activity_context(self, task: _Task) -> activity_api.ActivityContext:
        details = None
        raw_details = task.fields.get(b"heartbeat_details", b"")
        if raw_details:
            try:
                details = self.client.codec.decode(raw_details)
            except ValueError:
                details = None
        info = activity_api.ActivityInfo(
            workflow_id=task.get("workflow_id"),
            run_id=task.get("run_id"),
            activity_id=int(task.get("activity_id")),
            activity_type=task.get("activity_type"),
            attempt=int(task.get("attempt")),
            task_queue=self.task_queue,
            heartbeat_details=details,
        )
        return activity_api.ActivityContext(info, encode=self.client.codec.encode)

    async def _run_activity(self, running: RunningActivity) -> None:
        task, ctx = running.task, running.context
        info = ctx.info
        token = activity_api._context.set(ctx)
        structlog.contextvars.bind_contextvars(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            activity=info.activity_type,
            attempt=info.attempt,
            task_queue=self.task_queue,
        )
        call: Call | None = None
        try:
            definition = self._activities.get(info.activity_type)
            if definition is None:
                raise ApplicationError(
                    f"activity type {info.activity_type!r} is not registered on worker "
                    f"{self.identity}",
                    type="ActivityNotRegistered",
                )
            args = self.client.codec.decode(task.fields.get(b"input", b""))
            result: Any = None
            with running.scope:
                result = await call_activity(definition.fn, args)
            if running.scope.cancelled_caught:
                if running.releasing:
                    call = self.store.release_call(task.stream, task.msg_id)
                else:
                    call = self._act_failure_call(
                        task,
                        ApplicationError(
                            "activity cancelled", type="CancelledError", non_retryable=True
                        ),
                    )
            else:
                try:
                    payload = self.client.codec.encode(result)
                except PayloadError as exc:
                    # Another attempt would return the same value: do not retry.
                    raise ApplicationError(
                        f"activity result cannot be stored: {exc}", type="PayloadError",
                        non_retryable=True) from None
                call = self.store.act_complete_call(
                    info.workflow_id,
                    info.run_id,
                    task.get("activity_id"),
                    task.get("attempt"),
                    task.msg_id,
                    task.stream,
                    result=payload,
                    eager_consumer=self._eager_wft_consumer(),
                    eager_task_queue=self.task_queue,
                )
        except Exception as exc:
            log.info("activity_failed", error=f"{type(exc).__name__}: {exc}")
            call = self._act_failure_call(task, exc)
        finally:
            activity_api._context.reset(token)
            structlog.contextvars.unbind_contextvars(
                "workflow_id", "run_id", "activity", "attempt", "task_queue"
            )
            if call is not None:
                self._completions.append(call)
                self._completion_ready.set()
            del self._running[(task.stream, task.msg_id)]
            if task.claimed:
                self._claimed_done([task])
            if self._suspect == (task.stream, task.msg_id):
                self._suspect = None
            self._activity_slot_free.set()

    def _act_failure_call(self, task: _Task, exc: BaseException) -> Call:
        return self.store.act_complete_call(
            task.get("workflow_id"),
            task.get("run_id"),
            task.get("activity_id"),
            task.get("attempt"),
            task.msg_id,
            task.stream,
            failure=to_failure(exc),
            eager_consumer=self._eager_wft_consumer(),
            eager_task_queue=self.task_queue,
        )

    def _eager_wft_consumer(self) -> str:
        """Ask an activity completion to hand us the workflow task it queues, when we
        poll workflow tasks (of our task queue: the Lua checks the workflow's)."""
        return "" if not self._workflows or self._stopping else self.identity

    async def _completion_loop(self) -> None:
        while True:
            if not self._completions:
                await self._completion_ready.wait()
            self._completion_ready = anyio.Event()
            await self._flush_completions()

    async def _flush_completions(self) -> None:
        while self._completions:
            batch, self._completions = self._completions[:256], self._completions[256:]
            try:
                replies = await self.store.call_many(batch)
            except _TRANSIENT:
                # Not written: keep them (their tasks stay in flight) and retry.
                self._completions[:0] = batch
                raise
            eager: list[_Task] = []
            for call, reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    log.error("activity_completion_failed", error=str(reply))
                stream, msg_id = (
                    call.keys[-1],
                    str(call.args[5] if call.function != "rd_release" else call.args[0]),
                )
                self._in_flight[stream].discard(msg_id)
                self.stats["activities"] += 1
                handed = self.store.parse_eager_wft(reply)
                if handed is not None:
                    eager.append(_Task(*handed))
            eager = self._screened(eager)
            if eager:
                await self._take_eager_workflow_tasks(eager)

    async def _take_eager_workflow_tasks(self, tasks: list[_Task]) -> None:
        """Workflow tasks that activity completions handed us: run them now (the
        workflow poller is likely blocked in a read that would not see them)."""
        self.stats["eager_workflow_tasks"] += len(tasks)
        for task in tasks:
            self._in_flight[task.stream].add(task.msg_id)  # ours: keep it touched
        if self._stopping or self._tg is None:
            await self.store.call_many([self.store.release_call(t.stream, t.msg_id) for t in tasks])
            for task in tasks:
                self._in_flight[task.stream].discard(task.msg_id)
            return
        self._tg.start_soon(self._run_workflow_tasks_now, tasks)

    async def _run_workflow_tasks_now(self, tasks: list[_Task]) -> None:
        """Workflow tasks handed over outside the poller (eager, claimed)."""
        try:
            async with self._wf_lock:
                await self._process_workflow_tasks(tasks)
        except _TRANSIENT as exc:
            # Still pending on us: the workflow loop retries them from the backlog, where
            # _process_workflow_tasks put back the unfinished ones.
            log.warning("redis_unavailable", loop="eager_workflow_tasks", error=str(exc))
        finally:
            self._claimed_done(tasks)

    async def _heartbeat_loop(self) -> None:
        """Start marks for attempts that outlived LAZY_START_S, and heartbeats, batched
        into one round trip per pass. A 'stale'/'cancel' answer cancels the attempt."""
        while not self._stopping:
            await anyio.sleep(0.025)
            now = time.monotonic()
            batch: list[tuple[RunningActivity, Call]] = []
            for r in list(self._running.values()):
                task = r.task
                if not r.marked and now >= r.mark_at:
                    r.marked = True
                    batch.append((r, self.store.act_start_call(
                        task.get("workflow_id"), task.get("run_id"), task.get("activity_id"),
                        task.get("attempt"), task.msg_id, task.stream, self.identity)))
                if r.context.heartbeat_pending:
                    r.context.heartbeat_pending = False
                    # Encoded by activity.heartbeat(), where a bad value raises.
                    batch.append((r, self.store.act_heartbeat_call(
                        task.get("workflow_id"), task.get("run_id"), task.get("activity_id"),
                        task.get("attempt"), r.context.heartbeat_payload)))
            if not batch:
                continue
            replies = await self.store.call_many([call for _, call in batch])
            for (r, _), reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    log.warning("activity_housekeeping_failed", error=str(reply))
                elif reply[0] in (b"cancel", b"stale") and (r.task.stream, r.task.msg_id) in (
                    self._running
                ):
                    r.context.cancel_requested = True
                    r.scope.cancel()
