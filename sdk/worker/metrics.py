"""A worker's metrics (docs/metrics.md): task latencies observed as the worker takes and
lets go of task entries (TaskPlumbing calls `held`/`released` only when metrics are on),
failures by reason, and the task queue's lag polled from XINFO GROUPS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from redis.exceptions import RedisError

from engine import events as ev
from engine.calls import TaskRef
from engine.events import decode_packed_event
from engine.keys import GROUP
from sdk._metrics import Metrics, WorkerSource, metrics_for, new_registry, serve
from sdk.worker.task_entry import TaskEntry

if TYPE_CHECKING:
    from sdk.worker.plumbing import TaskPlumbing
    from sdk.worker.workflow_runner import StickyCache

log = structlog.get_logger("redurable.worker")
#: How often the worker reads its queue's lag (one pipelined XINFO GROUPS per poll).
LAG_POLL_S = 5.0
#: Entries taken and never let go of (lost with a connection) are forgotten past this.
_MAX_TRACKED = 100_000
UNKNOWN_TYPE = "_unknown"


class WorkerMetrics:
    def __init__(
        self,
        metrics: Metrics,
        plumbing: TaskPlumbing,
        cache: StickyCache,
        source: WorkerSource,
    ) -> None:
        self._m = metrics
        self._plumbing = plumbing
        self._cache = cache
        self.source = source
        self._namespace = source.namespace
        self._queue = plumbing.task_queue
        self._workflow_streams = frozenset(
            [*plumbing.workflow_streams, *plumbing.sticky_workflow_streams])
        self._sticky_streams = frozenset(plumbing.sticky_workflow_streams)
        self._activity_streams = frozenset(plumbing.activity_streams)
        #: (stream, entry id) -> (when taken, is a workflow task, its type)
        self._taken: dict[tuple[str, str], tuple[float, bool, str]] = {}
        self._children: dict[tuple[bool, str, str], Any] = {}
        self.registry: Any = None
        #: Where to serve /metrics while the worker runs (Worker(metrics_port=)).
        self.bind: int | str | None = None
        self._server: Any = None

    # --- while the worker runs ---------------------------------------------------------
    def start(self) -> None:
        self._m.add_source(self.source)
        if self.bind is not None and self._server is None:
            self._server = serve(self.registry, self.bind)

    @property
    def port(self) -> int | None:
        """The port /metrics is served on (the one bound when asked for port 0)."""
        return None if self._server is None else int(self._server.server_port)

    def stop(self) -> None:
        self._m.remove_source(self.source)
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # --- hooks of TaskPlumbing ---------------------------------------------------------
    def held(self, task: TaskEntry | TaskRef) -> None:
        key = (task.stream, task.msg_id)
        if key in self._taken or not isinstance(task, TaskEntry):
            return
        workflow = task.stream in self._workflow_streams
        if not workflow and task.stream not in self._activity_streams:
            return
        if len(self._taken) > _MAX_TRACKED:
            self._taken.clear()
        kind = self._workflow_type(task) if workflow else _field(task, b"activity_type")
        self._taken[key] = (time.perf_counter(), workflow, kind)
        # The entry id's first part is the server's time (ms) when it was queued.
        waited = max(0.0, time.time() - int(task.msg_id.split("-", 1)[0]) / 1000)
        self._child(workflow, "schedule_to_start", kind).observe(waited)
        if workflow and task.stream in self._sticky_streams:
            self._child(True, "sticky_routed", "").inc()

    def released(self, task: TaskEntry | TaskRef) -> None:
        taken = self._taken.pop((task.stream, task.msg_id), None)
        if taken is None:
            return
        started, workflow, kind = taken
        self._child(workflow, "execution", kind).observe(time.perf_counter() - started)

    def one_write_step(self, workflow_type: str, seconds: float) -> None:
        """A workflow task that a one-write activity step ran and wrote with the
        activity's completion (never queued): no wait, its activation to the reply."""
        self._child(True, "schedule_to_start", workflow_type).observe(0.0)
        self._child(True, "execution", workflow_type).observe(seconds)

    def failed(self, task: TaskEntry, reason: str) -> None:
        taken = self._taken.get((task.stream, task.msg_id))
        workflow = task.stream in self._workflow_streams
        kind = taken[2] if taken else (
            self._workflow_type(task) if workflow else _field(task, b"activity_type"))
        counter = self._m.workflow_task_failed if workflow else self._m.activity_failed
        counter.labels(self._namespace, self._queue, kind, reason).inc()

    def _child(self, workflow: bool, what: str, kind: str) -> Any:
        """A metric's series for this worker and `kind` (workflow or activity type),
        looked up once: `labels()` costs more than the observation itself."""
        key = (workflow, what, kind)
        child = self._children.get(key)
        if child is None:
            m = self._m
            family = {
                (True, "schedule_to_start"): m.workflow_task_schedule_to_start,
                (False, "schedule_to_start"): m.activity_schedule_to_start,
                (True, "execution"): m.workflow_task_execution,
                (False, "execution"): m.activity_execution,
                (True, "sticky_routed"): m.sticky_routed,
            }[(workflow, what)]
            labels = (self._namespace, self._queue, kind) if kind else (
                self._namespace, self._queue)
            child = self._children[key] = family.labels(*labels)
        return child

    def _workflow_type(self, task: TaskEntry) -> str:
        """From the cached run, else from the started event a new run's task carries;
        a task of an uncached run says nothing of its type without a read."""
        workflow_id = _field(task, b"workflow_id")
        cached = self._cache.get(workflow_id, _field(task, b"run_id"))
        if cached is not None:
            return cached.machine.info.workflow_type
        raw = task.fields.get(b"event")
        if raw:
            try:
                event = decode_packed_event(raw)
            except (ValueError, IndexError):
                return UNKNOWN_TYPE
            if isinstance(event, ev.WorkflowExecutionStarted):
                return event.workflow_type
        return UNKNOWN_TYPE

    # --- the queue's lag ----------------------------------------------------------------
    async def lag_loop(self) -> None:
        while not self._plumbing.stopping:
            try:
                await self.poll_lag()
            except (RedisError, OSError) as exc:
                log.warning("metrics_lag_poll_failed", error=str(exc))
            await anyio.sleep(LAG_POLL_S)

    async def poll_lag(self) -> None:
        """Sum XINFO GROUPS `lag` and `pending` over the shards' task streams (what
        KEDA's redis-streams scaler reads: docs/scaling.md)."""
        plumbing = self._plumbing
        kinds = [("workflow", s) for s in plumbing.workflow_streams]
        kinds += [("activity", s) for s in plumbing.activity_streams]
        pipe = plumbing.client.redis.pipeline(transaction=False)
        for _, stream in kinds:
            pipe.xinfo_groups(stream)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        totals: dict[tuple[str, str], int] = {}
        for (task_type, _), groups in zip(kinds, replies, strict=True):
            totals.setdefault((task_type, "lag"), 0)
            totals.setdefault((task_type, "pending"), 0)
            if isinstance(groups, Exception):
                continue  # no stream yet on that shard
            for group in groups:
                if group.get("name") not in (GROUP, GROUP.encode()):
                    continue
                totals[(task_type, "lag")] += int(group.get("lag") or 0)
                totals[(task_type, "pending")] += int(group.get("pending") or 0)
        self.source.queue = totals


def _field(task: TaskEntry, name: bytes) -> str:
    value = task.fields.get(name)
    return value.decode(errors="replace") if value else UNKNOWN_TYPE


def worker_metrics(
    registry: Any,
    bind: int | str | None,
    plumbing: TaskPlumbing,
    cache: StickyCache,
    free_activity_slots: Callable[[], int],
) -> WorkerMetrics | None:
    """The worker's metrics for `Worker(metrics_registry=, metrics_port=)`, or None
    when neither is given (nothing is imported, nothing is observed)."""
    if registry is None and bind is None:
        return None
    if registry is None:
        # A registry of its own: two workers in one process do not collide.
        registry = new_registry()
    metrics = metrics_for(registry)
    namespace = plumbing.keys.prefix
    source = WorkerSource(namespace, plumbing.task_queue, plumbing.stats,
                          lambda: len(cache), free_activity_slots)
    wm = WorkerMetrics(metrics, plumbing, cache, source)
    wm.registry = registry
    wm.bind = bind
    plumbing.metrics = wm
    store = plumbing.store
    if store.call_observer is None:  # the client's own registry, if it has one, wins
        store.call_observer = metrics.call_observer(namespace)
    return wm
