"""Worker: one task queue's workflow tasks (sdk/worker/workflow_tasks.py), activity tasks
(sdk/worker/activity_tasks.py) and queries (sdk/worker/queries.py), its standing among
the other workers (sdk/worker/liveness.py), its timers, and a graceful stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pickle
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from datetime import timedelta
from types import TracebackType
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from redis.exceptions import RedisError

from engine.errors import InvalidArgumentError
from engine.keys import GROUP, sticky_name
from engine.store import Call, Store
from engine.validate import check_task_queue
from sdk._definitions import (
    ActivityDefinition,
    WorkflowDefinition,
    activity_definition,
    workflow_definition,
)
from sdk._payload_hints import resolve_all
from sdk.client.client import Client
from sdk.interceptor import WorkerInterceptor
from sdk.worker.activity_tasks import ActivityTasks
from sdk.worker.handoff import Handoffs
from sdk.worker.interception import intercepted_definitions, worker_interceptors
from sdk.worker.liveness import Claimant, Liveness, ServerClock
from sdk.worker.metrics import worker_metrics
from sdk.worker.plumbing import READ_BLOCK_MS, TaskPlumbing, retried_while_stopping, transient
from sdk.worker.queries import QueryAnswerer
from sdk.worker.scheduler import Scheduler
from sdk.worker.startup import start_up
from sdk.worker.task_entry import Fields, TaskEntry
from sdk.worker.timer_leases import ShardLeases
from sdk.worker.timers import TimerLoop
from sdk.worker.workflow_runner import StickyCache
from sdk.worker.workflow_tasks import WorkflowTasks

log = structlog.get_logger("redurable.worker")


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
        handle_signals: bool | None = None,
        sticky_queue_schedule_to_start_timeout: timedelta | float = timedelta(seconds=1),
        activity_executor: concurrent.futures.Executor | None = None,
        no_remote_activities: bool = False,
        metrics_registry: Any = None,
        metrics_port: int | str | None = None,
        interceptors: Sequence[WorkerInterceptor] = (),
    ) -> None:
        """`activity_executor` runs the plain `def` activities: by default a thread
        pool of `max_concurrent_activities` threads, made by the worker and shut down
        with it (one given is the caller's to shut down). A ProcessPoolExecutor works
        for CPU-bound code, without heartbeats (docs/activities.md).
        `no_remote_activities`: poll no activity tasks (a worker of workflows only).
        `metrics_registry` (a prometheus_client CollectorRegistry) gets the worker's
        metrics; `metrics_port` (a port, or "host:port") serves them at /metrics while
        the worker runs, from `metrics_registry` or a registry of its own
        (docs/metrics.md; needs `pip install 'redurable[metrics]'`).
        `interceptors` wrap activity attempts and workflow runs, after the client's
        interceptors that are also worker interceptors (docs/interceptors.md)."""
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
            if ad.name in self._activities:
                raise ValueError(f"two activities named {ad.name!r}")
            self._activities[ad.name] = ad
        #: What local activities may run: every registered one, also with
        #: no_remote_activities (as temporalio's: they are the worker's own).
        self._local_activities = dict(self._activities)
        if no_remote_activities:
            self._activities = {}
        if not self._workflows and not self._activities:
            raise ValueError(
                "a worker needs at least one workflow or activity"
                + (" (no_remote_activities=True: activities are not polled)"
                   if no_remote_activities else "")
            )
        self._own_executor = activity_executor is None
        self._activity_executor = activity_executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent_activities, thread_name_prefix="redurable-activity"
        )
        _check_picklable(self._activities.values(), self._activity_executor)
        resolve_all(self._workflows.values(), self._activities.values())
        self.interceptors = worker_interceptors(client.interceptors, interceptors)
        self._workflows = intercepted_definitions(self._workflows, self.interceptors)
        self.max_concurrent_activities = max_concurrent_activities
        self.max_workflow_batch = max_workflow_batch
        self.liveness_ms = int(liveness_timeout * 1000)
        self.workflow_task_timeout_ms = int(workflow_task_timeout * 1000)
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.max_deliveries = max_deliveries
        #: The shortest time between two scans for due timers: the loop sleeps until the
        #: next due time, but under load it scans no more often than this.
        self.timer_interval = timer_interval
        #: A shard's timers are scanned on schedule by one worker at a time
        #: (sdk/worker/timer_leases.py).
        leases = ShardLeases(self.store, self.identity,
                             fleet_size=self._fleet_size)
        self._timers = TimerLoop(self.store, min_interval=timer_interval, leases=leases)
        #: Fires the namespace's due schedules (every worker does: sdk/worker/scheduler.py).
        self.scheduler = Scheduler(self.store, fleet_size=self._fleet_size)
        #: Stop gracefully on SIGTERM/SIGINT. None (the default): yes when `run()` is
        #: called, no under `async with` (the block's owner decides when it ends, and
        #: Ctrl-C stays a KeyboardInterrupt there, as with temporalio's worker).
        self.handle_signals = handle_signals
        self.cache = StickyCache(max_cached_workflows)
        sticky_timeout = sticky_queue_schedule_to_start_timeout
        sticky_s = (
            sticky_timeout.total_seconds()
            if isinstance(sticky_timeout, timedelta)
            else float(sticky_timeout)
        )
        if not sticky_s > 0:
            raise InvalidArgumentError(
                f"sticky_queue_schedule_to_start_timeout must be positive, not {sticky_timeout!r}"
            )
        #: Sticky routing (docs/design-notes.md "Sticky workflows"): the workflows we ran
        #: last come back to us while they are cached. No cache, no stickiness.
        self.sticky = (
            sticky_name(self.identity) if max_cached_workflows > 0 and self._workflows else None
        )
        self._plumbing = TaskPlumbing(
            client, self.task_queue, self.identity, max_deliveries=max_deliveries,
            sticky=self.sticky,
        )
        self.stats = self._plumbing.stats
        self._activity_tasks = ActivityTasks(
            self._plumbing,
            self._activities,
            max_concurrent=max_concurrent_activities,
            executor=self._activity_executor,
        )
        self._activity_tasks.interceptors = self.interceptors
        self._workflow_tasks = WorkflowTasks(
            self._plumbing,
            self._workflows,
            self.cache,
            self._activity_tasks,
            local_activities=self._local_activities,
            max_batch=max_workflow_batch,
            task_timeout_ms=self.workflow_task_timeout_ms,
            sticky_ms=max(1, int(sticky_s * 1000)),
            held_shards=lambda: leases.held,  # their wakes are for the others
        )
        #: Prometheus metrics (sdk/worker/metrics.py); None when not asked for.
        self.metrics = worker_metrics(metrics_registry, metrics_port, self._plumbing,
                                      self.cache, self._activity_tasks.free_slots)
        clock = ServerClock()
        self._queries = QueryAnswerer(
            client, self.task_queue, self._workflows, self.cache, clock.now_ms
        )
        claimants: list[Claimant] = []
        if self._workflows:
            self._activity_tasks.eager_workflow_tasks = self._workflow_tasks
            claimants.append(self._workflow_tasks)
        if self._activities:
            claimants.append(self._activity_tasks)
        if self._workflows:
            claimants.append(_ClaimedQueries(self._plumbing, self._queries))
        self.liveness = Liveness(
            self._plumbing,
            claimants,
            clock,
            liveness_ms=self.liveness_ms,
            advertised={
                "workflows": {n: sorted(d.queries) for n, d in self._workflows.items()},
                "signals": {n: sorted(d.signals) for n, d in self._workflows.items()},
                "activities": sorted(self._activities),
                "sticky": self._plumbing.sticky,
            },
        )
        self.liveness.on_death.append(self._timers.holder_died)
        #: Applies the shards' cross-shard hand-offs (child workflows, external signals).
        self.handoffs = Handoffs(
            self.store, self.identity, liveness_ms=self.liveness_ms,
            max_deliveries=max_deliveries, stopping=lambda: self._plumbing.stopping,
            fleet_size=self._fleet_size,
        )
        self._stop_requested = anyio.Event()
        #: Pollers still reading (each counts itself out as it ends): a stop lets their
        #: reads end by themselves (they block <= READ_BLOCK_MS) rather than cancel them.
        self._pollers_running = 0
        self._pollers_done = anyio.Event()
        self._background: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------
    def _fleet_size(self) -> int:
        """The live workers of our task queue as far as we know (we included): the
        fleet-wide chores (timer looks, schedule passes, idle claims) are shared by it."""
        return self.liveness.death_watch.watched + 1

    def shutdown(self) -> None:
        """Ask `run()` to stop polling, finish or hand back in-flight work, and return."""
        self._stop_requested.set()

    async def __aenter__(self) -> Worker:
        """`async with Worker(...) as worker:` runs the worker in the background of the
        block (temporalio's form); leaving the block shuts it down gracefully."""
        if self._background is not None:
            raise RuntimeError("this worker is already running")
        # A task of its own rather than a task group around the block: an error in the
        # block, or in the worker, reaches the caller as itself, not in an ExceptionGroup.
        self._background = asyncio.ensure_future(self.run())
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._background = self._background, None
        if task is None:
            return
        self.shutdown()
        try:
            # Shielded: when the block is cancelled the worker still drains (in its task).
            await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            if e is None:
                raise  # the worker failed: the block's own error, if any, goes first
            log.exception("worker_failed", worker=self.identity)

    async def run(self) -> None:
        """Run until `shutdown()`, SIGTERM/SIGINT, or cancellation; drains gracefully.
        Its start-up waits for a server not ready yet (sdk/worker/startup.py)."""
        signals = self._signal_loop if self._handles_signals() else None
        if not await start_up(self.liveness, sticky=self._plumbing.sticky, signals=signals,
                              retry=self.client.retrier.config, stop=self._stop_requested):
            return
        if self.metrics is not None:
            self.metrics.start()
        log.info(
            "worker_started",
            worker=self.identity,
            task_queue=self.task_queue,
            workflows=sorted(self._workflows),
            activities=sorted(self._activities),
        )
        try:
            async with anyio.create_task_group() as tg:
                self._plumbing.tg = tg
                tg.start_soon(self._guard, self.liveness.beat_loop)
                tg.start_soon(self.liveness.presence.hold)
                tg.start_soon(self._guard, self.liveness.death_watch_loop)
                tg.start_soon(self._guard, self._timer_loop)
                tg.start_soon(self._guard, self._scheduler_loop)
                if self.metrics is not None:
                    tg.start_soon(self.metrics.lag_loop)
                tg.start_soon(self._guard, self.handoffs.run)
                if self._workflows:
                    self._start_poller(tg, self._workflow_tasks.poll)
                    self._start_poller(tg, self._query_loop)
                if self._activities:
                    self._start_poller(tg, self._activity_tasks.poll)
                    tg.start_soon(self._guard, self._activity_tasks.completion_loop)
                    tg.start_soon(self._guard, self._activity_tasks.housekeeping_loop)
                if signals is not None:
                    tg.start_soon(signals)
                try:
                    await self._stop_requested.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._drain()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.liveness.leave()
            if self.metrics is not None:
                self.metrics.stop()
            if self._own_executor:
                # Threads of attempts handed back at shutdown may still run: they are
                # not waited for (their results are dropped by fencing).
                self._activity_executor.shutdown(wait=False, cancel_futures=True)
            log.info("worker_stopped", worker=self.identity)

    def _start_poller(self, tg: TaskGroup, loop: Callable[[], Awaitable[None]]) -> None:
        self._pollers_running += 1

        async def poller() -> None:
            try:
                await self._guard(loop)
            finally:
                self._pollers_running -= 1
                if not self._pollers_running:
                    self._pollers_done.set()

        tg.start_soon(poller)

    async def _drain(self) -> None:
        self._plumbing.stopping = True
        self._plumbing.worker_shutdown.set()
        # Let the pollers' reads end by themselves (they block <= READ_BLOCK_MS, idle
        # ones are cut short) and the workflow batch in hand commit. A read cancelled
        # mid-way may have been served already: its entries would be pending on us,
        # unseen (_hand_back_unseen).
        self._plumbing.cut_idle_reads()
        with anyio.move_on_after(max(self.graceful_shutdown_timeout, 2 * READ_BLOCK_MS / 1000)):
            if self._pollers_running:
                await self._pollers_done.wait()
        with anyio.move_on_after(self.graceful_shutdown_timeout):
            await self._workflow_tasks.finished()  # and eager workflow tasks
            await self._activity_tasks.finished()
        await self._activity_tasks.hand_back_running()
        # Held but never started (claimed while the slots were full, speculations to
        # retry, ...): hand them back too, or they wait for the idle-time claim.
        left = [*self._workflow_tasks.backlog, *self._activity_tasks.backlog,
                *self._plumbing.take_waiting_suspects()]
        self._workflow_tasks.backlog, self._activity_tasks.backlog = [], []
        await retried_while_stopping("flush_completions", self._activity_tasks.flush_completions)
        await retried_while_stopping("release_held", lambda: self._plumbing.release(left))
        with anyio.move_on_after(2):
            await self.store.finish_reads(self.identity)  # none left blocked (cluster)
            await self._hand_back_unseen()
        await self._release_sticky()

    async def _release_sticky(self) -> None:
        """Hand our workflows back at once: the tasks waiting on our sticky streams go
        to the shared ones, and with the streams gone nothing more is routed to us."""
        sticky = self._plumbing.sticky
        if not sticky:
            return
        try:
            with anyio.move_on_after(2):
                moved = await self.store.release_sticky(self.task_queue, sticky)
                log.info("sticky_released", worker=self.identity, tasks=moved)
        except (RedisError, OSError) as exc:  # live workers release it when we are gone
            log.warning("sticky_release_failed", error=str(exc))

    async def _hand_back_unseen(self) -> None:
        """Entries the server delivered to us that we never took in hand: a read whose
        reply was lost with its connection, or cut short as we stopped. Nobody else reads
        for our consumer name, and a worker that stops is not claimed from: left there,
        a query request would go unanswered and a task would wait for the liveness
        timeout. Tasks go back to their queue; query requests are answered here."""
        plumbing = self._plumbing
        query_streams = [plumbing.query_stream, *plumbing.sticky_query_streams]
        streams = [*plumbing.workflow_streams, *plumbing.activity_streams, *query_streams]
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
                ids = [i for i in ids if i not in plumbing.in_flight[stream]]
                if not ids:
                    continue
                log.info("unseen_entries_handed_back", stream=stream, entries=len(ids))
                if stream not in query_streams:
                    releases.extend(self.store.release_call(stream, i) for i in ids)
                    continue
                claimed: Any = await redis.xclaim(stream, GROUP, self.identity, 0, ids)
                for sid, fields in claimed:
                    if fields:
                        await self._queries.answer(TaskEntry(stream, sid.decode(), fields))
            if releases:
                await self.store.call_many(releases)
        except (RedisError, OSError) as exc:  # left pending: claimed when found idle
            log.warning("hand_back_failed", error=str(exc))

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a loop alive across transient Redis errors (with a short pause)."""
        while not self._plumbing.stopping:
            try:
                await loop()
                return
            except Exception as exc:
                # ...or an error reply that says "not now" (the hot path's TRYAGAIN after
                # a slot moved for longer than its retries: engine/reconnect.py).
                if not transient(exc):
                    raise
                log.warning("redis_unavailable", loop=loop.__qualname__, error=str(exc))
                await anyio.sleep(0.5)

    def _handles_signals(self) -> bool:
        return self.handle_signals or (self.handle_signals is None and self._background is None)

    async def _signal_loop(self) -> None:
        try:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    log.info("worker_shutdown_requested", worker=self.identity)
                    self.shutdown()
                    return
        except (ValueError, RuntimeError):  # not the main thread: the owner stops us
            return

    async def _timer_loop(self) -> None:
        await self._timers.run(lambda: self._plumbing.stopping)

    async def _scheduler_loop(self) -> None:
        await self.scheduler.run(lambda: self._plumbing.stopping)

    async def _query_loop(self) -> None:
        plumbing = self._plumbing
        while not plumbing.stopping:
            streams = [plumbing.query_stream, *plumbing.sticky_query_streams]
            for task in await plumbing.read(streams, 16):
                await self._queries.answer(task)


def _check_picklable(
    definitions: Iterable[ActivityDefinition], executor: concurrent.futures.Executor
) -> None:
    """A process pool sends each sync activity to another process: say so at once
    when one cannot be sent (a lambda's closure, a method of an unpicklable object),
    rather than fail every attempt."""
    if not isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        return
    for d in definitions:
        if d.is_async:
            continue
        try:
            pickle.dumps(d.fn)
        except Exception as exc:
            raise TypeError(
                f"activity {d.name!r} runs in a process pool, so it must be picklable "
                f"(a module-level function, or a method of a picklable object): {exc}"
            ) from None


class _ClaimedQueries:
    """A dead worker's unanswered query requests, answered (or, expired, dropped) by
    QueryAnswerer, which acknowledges each one. Claimed by presence only: a request is
    answered at once or not at all, it is never held (nor touched) while alive."""

    claims_idle = False

    def __init__(self, plumbing: TaskPlumbing, queries: QueryAnswerer) -> None:
        self._plumbing = plumbing
        self._queries = queries
        self.claim_streams: Sequence[str] = [plumbing.query_stream]

    def claim_limit(self, stream: str) -> int | None:
        return None

    def suspect_room(self, stream: str) -> int | None:
        return None

    def adopt(
        self, stream: str, claimed: list[tuple[bytes, Fields]], suspects: AbstractSet[bytes]
    ) -> None:
        plumbing = self._plumbing
        for sid, fields in claimed:
            if plumbing.tg is not None and not plumbing.stopping:
                plumbing.stats["queries_claimed"] += 1
                plumbing.tg.start_soon(self._answer, TaskEntry(stream, sid.decode(), fields))

    async def _answer(self, task: TaskEntry) -> None:
        try:
            await self._queries.answer(task)
        except (RedisError, OSError) as exc:  # left pending: the client times out
            log.warning("claimed_query_failed", error=str(exc))
