"""What the workflow-task and activity-task paths of one worker share: the task streams
of its task queue, reading them, screening out malformed entries (dead-lettered at
once), and the bookkeeping of the entries it holds."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskGroup
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.calls import TaskRef
from engine.reconnect import is_transient
from engine.store import Call, Store
from sdk._worker_shutdown import WorkerShutdown
from sdk.client.client import Client
from sdk.worker.task_entry import Fields, TaskEntry, malformed

if TYPE_CHECKING:
    from sdk.worker.metrics import WorkerMetrics

log = structlog.get_logger("redurable.worker")
#: Errors a worker outlives: Redis away for a moment (its loops pause and go on).
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError,
             # redis-py's cluster client: a slot moving or without a node, or it gave
             # up following redirections for now (nothing applied).
             TryAgainError, ClusterDownError, ClusterError)


def transient(exc: BaseException) -> bool:
    """Whether a worker outlives `exc`: one of TRANSIENT, or an error reply that says
    "not now" (engine/reconnect.py TRANSIENT_REPLIES: BUSY from redis-py, which has no
    class for it, READONLY, MASTERDOWN...). `except TRANSIENT` alone lets those through,
    and a batch whose tasks are held would be dropped mid-way: touched for ever, never
    claimed (workflow_tasks.py `_process`)."""
    return isinstance(exc, TRANSIENT) or is_transient(exc)


async def retried_while_stopping(what: str, step: Callable[[], Awaitable[None]],
                                 seconds: float = 2.0) -> None:
    """A step of a stopping worker's drain that writes to Redis: "not now" errors are
    retried for up to `seconds`, then the step is given up (logged) so that the rest of
    the drain (handing back unseen entries, releasing the sticky streams) still runs.
    What it would have written is not lost: the tasks it held stay pending on the
    worker, which the fleet claims once the worker is gone."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await step()
            return
        except Exception as exc:
            if not transient(exc):
                raise
            if time.monotonic() >= deadline:
                log.warning("drain_step_given_up", step=what, error=str(exc))
                return
        await anyio.sleep(0.1)


#: How long a poller's read blocks: the longest a stopping worker waits for its reads.
READ_BLOCK_MS = 500
#: How long a read blocks after one that found nothing (an idle worker's pollers wake
#: this often, not every READ_BLOCK_MS: each empty read costs about 0.2 ms of CPU) when
#: the store can cut it short as the worker stops (Store.reads_cut_short). A blocked
#: read returns at once when an entry comes: no task waits for it. Nothing else needs
#: the read to end: a stop cuts it, a stream deleted under it ends it (UNBLOCKED), the
#: backlogs are run by whoever fills them, and the server's idle-client `timeout` spares
#: blocked clients. 10 s keeps a connection's silence well below the idle timeouts of
#: load balancers and NATs (minutes). It was 2 s: 2 reads a second of an idle worker.
IDLE_READ_BLOCK_MS = 10_000


class TaskPlumbing:
    """The task streams of one worker's task queue and what it holds of them."""

    def __init__(
        self,
        client: Client,
        task_queue: str,
        identity: str,
        *,
        max_deliveries: int,
        sticky: str | None = None,
    ) -> None:
        self.client = client
        self.store: Store = client.store
        self.keys = client.keys
        self.task_queue = task_queue
        self.identity = identity
        self.max_deliveries = max_deliveries
        shards = range(self.keys.shards)
        self.workflow_streams = [self.keys.workflow_tasks(s, task_queue) for s in shards]
        self.activity_streams = [self.keys.activity_tasks(s, task_queue) for s in shards]
        self.query_stream = self.keys.queries(task_queue)
        #: The worker's sticky name (engine.keys.sticky_name), None when it caches no
        #: workflow; its own streams: the workflow tasks and queries of the workflows
        #: it owns (docs/design-notes.md "Sticky workflows").
        self.sticky = sticky
        self.sticky_workflow_streams: list[str] = []
        self.sticky_query_streams: list[str] = []
        if sticky:
            *self.sticky_workflow_streams, query = self.store.sticky_streams(task_queue, sticky)
            self.sticky_query_streams = [query]
        self.shard_of_stream = {s: i for i, s in enumerate(self.workflow_streams)}
        self.shard_of_stream.update({s: i for i, s in enumerate(self.sticky_workflow_streams)})
        self._workflow_stream_set = frozenset(self.shard_of_stream)
        self.shard_of_stream.update({s: i for i, s in enumerate(self.activity_streams)})
        #: Entry ids we hold, by stream: touched on every beat (sdk/worker/liveness.py),
        #: so that no live worker takes them for a dead one's.
        self.in_flight: dict[str, set[str]] = defaultdict(set)
        #: Tasks claimed from dead workers and not yet done: a suspect waits for them
        #: (sdk/worker/activity_tasks.py).
        self.claimed_in_flight = 0
        #: The one task delivered more than once (a suspect: it went down with a worker
        #: before) that we hold, of either kind, if any (ActivityTasks.suspect_room).
        self.suspect: tuple[str, str] | None = None
        #: Suspects waiting for the claimed tasks to clear before they run: a stopping
        #: worker hands them back with its backlogs (take_waiting_suspects).
        self._waiting_suspects: list[TaskEntry] = []
        #: Since when suspect_room has seen other claimed tasks held (None: none).
        self._claimed_busy_since: float | None = None
        self.stats: dict[str, int] = defaultdict(int)
        self.stopping = False
        #: Set when the graceful shutdown begins, for activities (sdk/activity.py).
        self.worker_shutdown = WorkerShutdown()
        #: The worker's task group while it runs (None before).
        self.tg: TaskGroup | None = None
        #: Task latencies and failures (sdk/worker/metrics.py); None: metrics are off.
        self.metrics: WorkerMetrics | None = None
        #: The streams of each read whose last call found nothing: its next one blocks
        #: IDLE_READ_BLOCK_MS (see read).
        self._idle_reads: set[tuple[str, ...]] = set()
        #: The idle reads blocked now: cut short when the worker stops (cut_idle_reads).
        self._idle_blocked: set[anyio.CancelScope] = set()

    # --- held entries -----------------------------------------------------------------
    def hold(self, task: TaskEntry | TaskRef) -> None:
        self.in_flight[task.stream].add(task.msg_id)
        if self.metrics is not None:
            self.metrics.held(task)

    def let_go(self, task: TaskEntry | TaskRef) -> None:
        self.in_flight[task.stream].discard(task.msg_id)
        if self.metrics is not None:
            self.metrics.released(task)

    def holds(self, task: TaskEntry | TaskRef) -> bool:
        return task.msg_id in self.in_flight[task.stream]

    def note_failure(self, task: TaskEntry, reason: str) -> None:
        """A task's code failed (counted by reason when metrics are on)."""
        if self.metrics is not None:
            self.metrics.failed(task, reason)

    def suspect_room(self, wait_s: float) -> int:
        """Tasks that went down with a worker before may be what kills workers: we hold
        one of them at a time (activity or workflow task), so that a healthy one is not
        in flight, delivery after delivery, on every worker a poison one kills (and
        dead-lettered with it). Nor while we hold other claimed tasks: one of them may be
        the poison (delivered once, it is no suspect yet), and the suspect's claim counts
        a delivery at once. As a claimed suspect waits for them: `wait_s` at most (a
        long activity claimed must not hold the suspects of every dead worker back)."""
        if self.suspect is not None:
            return 0
        if self.claimed_in_flight == 0:
            self._claimed_busy_since = None
            return 1
        now = time.monotonic()
        if self._claimed_busy_since is None:
            self._claimed_busy_since = now
        return 1 if now - self._claimed_busy_since >= wait_s else 0

    def count_claimed(self, tasks: Iterable[TaskEntry]) -> None:
        for task in tasks:
            task.claimed = True
            self.claimed_in_flight += 1

    def claimed_done(self, tasks: Iterable[TaskEntry]) -> None:
        for task in tasks:
            if task.claimed:
                task.claimed = False
                self.claimed_in_flight -= 1

    def take_over(self, stream: str, claimed: Sequence[tuple[bytes, Fields]]) -> list[TaskEntry]:
        """The entries claimed from a dead worker that are ours to run: malformed ones
        are dead-lettered, and the rest are held from now on."""
        tasks: list[TaskEntry] = []
        held = self.in_flight[stream]
        for sid, fields in claimed:
            task = TaskEntry(stream, sid.decode(), fields)
            problem = self.malformed(stream, fields)
            if problem is not None:
                assert self.tg is not None
                # Counted as claimed until written: a suspect claimed with it waits for
                # it, else the suspect killed us first, again and again, and the entry
                # was dead-lettered as a crash instead of as malformed.
                self.claimed_in_flight += 1
                self.tg.start_soon(self._dead_letter_claimed,
                                   [self.dead_letter_call(task, problem)])
                continue
            if task.msg_id in held:
                continue  # ours already (a late touch let it go idle): it is in hand
            # Touched from now on. Left untouched while it waited in a backlog (for a
            # free activity slot), it went idle, was claimed again and again, started
            # twice, and dead-lettered as poison after max_deliveries rounds.
            held.add(task.msg_id)
            self.stats["claimed"] += 1
            log.info("task_claimed", stream=stream, message_id=task.msg_id)
            tasks.append(task)
        return tasks

    async def _dead_letter_claimed(self, calls: list[Call]) -> None:
        try:
            await self.dead_letter(calls)
        finally:
            self.claimed_in_flight -= 1

    def suspect_waits(self, task: TaskEntry) -> None:
        self._waiting_suspects.append(task)

    def suspect_may_start(self, task: TaskEntry) -> bool:
        """Whether a waiting suspect is still ours to run: False once a stopping
        worker's drain took it back (take_waiting_suspects)."""
        for i, waiting in enumerate(self._waiting_suspects):
            if waiting is task:
                del self._waiting_suspects[i]
                return True
        return False

    def take_waiting_suspects(self) -> list[TaskEntry]:
        waiting, self._waiting_suspects = self._waiting_suspects, []
        return waiting

    async def release(self, tasks: Sequence[TaskEntry]) -> None:
        """Hand tasks we hold but will not run back to their queue, for any worker."""
        if not tasks:
            return
        await self.store.call_many([self.store.release_call(t.stream, t.msg_id) for t in tasks])
        for task in tasks:
            self.let_go(task)

    # --- reading ----------------------------------------------------------------------
    async def read(
        self,
        streams: Sequence[str],
        count: int,
        after: Sequence[Call] = (),
        on_replies: Callable[[list[Any]], None] | None = None,
    ) -> list[TaskEntry]:
        """New entries of `streams` for us (blocking up to READ_BLOCK_MS, or
        IDLE_READ_BLOCK_MS after a read of them that found nothing), malformed ones
        dead-lettered. Every backlog of held tasks is run by whoever fills it, not by
        its poller (which may be blocked here). `after`: calls sent with the read, in
        one round trip (Store.read_group_after), their replies handed to `on_replies`
        before the read answers."""
        started = time.monotonic()
        key = tuple(streams)
        # A read that carries calls is never the long one a stopping worker cuts short:
        # their replies must come back.
        idle = (not after and key in self._idle_reads and self.store.reads_cut_short
                and not self.stopping)
        block = IDLE_READ_BLOCK_MS if idle else READ_BLOCK_MS
        entries: list[tuple[str, str, Fields]] = []
        try:
            if idle:
                entries = await self._idle_read(streams, count, block)
            elif after:
                assert on_replies is not None
                entries = await self.store.read_group_after(
                    after, on_replies, self.identity, streams, count, block)
            else:
                entries = await self.store.read_group(self.identity, streams, count, block)
        except ResponseError as exc:
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            # A stream of ours is gone (NOGROUP; UNBLOCKED: deleted while we blocked
            # on it): live workers took us for dead (our presence was lost for longer
            # than their grace) and released our sticky streams, or someone deleted a
            # queue's stream. Create what is missing and read on; what they claimed
            # from us is theirs now (fenced). (Completions sent before the read had
            # their replies handed over first.)
            log.warning("task_streams_recreated", worker=self.identity, error=str(exc))
            await self.store.ensure_groups(self.task_queue, self.sticky)
            return []
        if entries:
            self._idle_reads.discard(key)
        else:
            self._idle_reads.add(key)
        if not entries and time.monotonic() - started < 0.005:
            # A server that does not block (fakeredis): do not spin on it.
            await anyio.sleep(0.005)
        tasks = []
        bad: list[Call] = []
        for stream, msg_id, fields in entries:
            task = TaskEntry(stream, msg_id, fields)
            problem = self.malformed(stream, fields)
            if problem is None:
                tasks.append(task)
            else:
                bad.append(self.dead_letter_call(task, problem))
        if bad:
            await self.dead_letter(bad)
        return tasks

    async def _idle_read(
        self, streams: Sequence[str], count: int, block: int
    ) -> list[tuple[str, str, Fields]]:
        """A long read in a cancel scope that cut_idle_reads may cancel. Only idle reads
        take one: a scope costs a busy worker's every read (entered, left, its task
        looked up: ~4 us; a profile of 20 workers showed it among the per-round costs)."""
        with anyio.CancelScope() as scope:
            self._idle_blocked.add(scope)
            try:
                return await self.store.read_group(self.identity, streams, count, block)
            finally:
                self._idle_blocked.discard(scope)
        return []  # cut short (the scope swallowed its cancellation)

    def cut_idle_reads(self) -> None:
        """The worker stops: end the idle reads blocked now rather than wait for them.
        An entry the server delivered to one just before is pending on us unseen: the
        drain hands such entries back (Worker._hand_back_unseen)."""
        for scope in list(self._idle_blocked):
            scope.cancel()

    # --- malformed entries ------------------------------------------------------------
    def screened(self, tasks: list[TaskEntry]) -> list[TaskEntry]:
        """The tasks that are well-formed; the others are dead-lettered. For entries
        handed over eagerly: the eager read takes the stream's next new entry, which
        is not always the one just queued (a malformed one may come first)."""
        bad = [(t, p) for t in tasks if (p := self.malformed(t.stream, t.fields))]
        if not bad:  # the usual case: no copy, no scan per task
            return tasks
        assert self.tg is not None
        self.tg.start_soon(self.dead_letter, [self.dead_letter_call(t, p) for t, p in bad])
        return [t for t in tasks if all(t is not b for b, _ in bad)]

    def malformed(self, stream: str, fields: Fields) -> str | None:
        """Why a task entry cannot be processed, or None (query requests are checked
        where they are answered)."""
        if stream not in self.shard_of_stream:
            return None
        return malformed(stream in self._workflow_stream_set, fields)

    def dead_letter_call(self, task: TaskEntry, problem: str) -> Call:
        log.error("task_dead_lettered", stream=task.stream, message_id=task.msg_id,
                  reason=problem)
        return self.store.dead_letter_call(
            task.stream, self.shard_of_stream.get(task.stream, 0), task.msg_id, problem)

    async def dead_letter(self, calls: list[Call]) -> None:
        """Dead-letter malformed entries at once: every delivery would fail (or kill a
        loop) alike. Not written (Redis away): they stay pending and come back claimed."""
        try:
            await self.store.call_many(calls)
        except (RedisError, OSError) as exc:
            log.warning("dead_letter_failed", error=str(exc))
            return
        self.stats["dead_lettered"] += len(calls)
