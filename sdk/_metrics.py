"""Prometheus metrics of workers and clients (docs/metrics.md).

prometheus-client is optional (`pip install 'redurable[metrics]'`): it is imported only
when a worker or client is given a registry or a metrics port. The metric families live
once per registry (a registry refuses a name twice), so several workers and a client of
one process can share one: their series differ by labels.

Counters the worker already keeps (`Worker.stats`: cache hits, claims, dead letters...)
and gauges (cache size, queue lag) are read when Prometheus scrapes, by one collector per
registry: nothing is added to the task path for them. The histograms are observed as
tasks and calls happen, with `time.perf_counter()` only.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

#: Seconds; from a millisecond (a local step) to a minute (a task waiting in a backlog).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
WORKFLOW_LABELS = ("namespace", "task_queue", "workflow_type")
ACTIVITY_LABELS = ("namespace", "task_queue", "activity_type")
WORKER_LABELS = ("namespace", "task_queue")

#: Worker.stats counters exposed as they are: metric name -> (stats key, meaning).
STATS_COUNTERS: dict[str, tuple[str, str]] = {
    "redurable_sticky_cache_hit": (
        "cache_hits", "Workflow tasks run on a cached workflow (no replay)"),
    "redurable_sticky_cache_miss": (
        "full_replays", "Workflow tasks that replayed the whole history (not cached)"),
    "redurable_sticky_cache_total_forced_eviction": (
        "cache_evictions", "Workflows the full cache let go of to make room"),
    "redurable_workflow_task_new_run": (
        "new_runs", "Workflow tasks that began a new run (nothing to replay)"),
    "redurable_workflow_task_completed": (
        "workflow_tasks", "Workflow tasks completed by this worker"),
    "redurable_activity_task_completed": (
        "activities", "Activity attempts whose outcome this worker wrote"),
    "redurable_task_claimed": (
        "claimed", "Tasks taken over from workers found dead"),
    "redurable_task_dead_lettered": (
        "dead_lettered", "Tasks this worker moved to a dead-letter stream"),
    "redurable_workflow_task_stale": (
        "stale_workflow_tasks", "Workflow tasks found already done or fenced when started"),
    "redurable_eager_activity": (
        "eager_activities", "Activity tasks handed to this worker by its own completions"),
    "redurable_eager_workflow_task": (
        "eager_workflow_tasks", "Workflow tasks handed to this worker by activity completions"),
    "redurable_local_activity": (
        "local_activities", "Local activities run inside workflow tasks"),
}


def prometheus() -> ModuleType:
    """prometheus_client, or a clear error saying how to get it."""
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            "metrics need the prometheus-client package: pip install 'redurable[metrics]'"
        ) from None
    return prometheus_client


@dataclass
class WorkerSource:
    """What the scrape-time collector reads of one worker."""

    namespace: str
    task_queue: str
    stats: dict[str, int]
    cache_size: Callable[[], int]
    free_activity_slots: Callable[[], int]
    #: (task_type, "lag" | "pending") -> entries, from the worker's last XINFO GROUPS.
    queue: dict[tuple[str, str], int] = field(default_factory=dict)


class Metrics:
    """The metric families of one registry (made once per registry: `metrics_for`)."""

    def __init__(self, registry: Any) -> None:
        p = prometheus()
        buckets = LATENCY_BUCKETS

        def histogram(name: str, doc: str, labels: Sequence[str]) -> Any:
            return p.Histogram(name, doc, labels, registry=registry, buckets=buckets)

        self.workflow_task_schedule_to_start = histogram(
            "redurable_workflow_task_schedule_to_start_latency_seconds",
            "From a workflow task's queueing to a worker taking it", WORKFLOW_LABELS)
        self.workflow_task_execution = histogram(
            "redurable_workflow_task_execution_latency_seconds",
            "From a worker taking a workflow task to its completion written", WORKFLOW_LABELS)
        self.workflow_task_failed = p.Counter(
            "redurable_workflow_task_execution_failed",
            "Workflow tasks that failed (the code raised, non-determinism, ...), by reason",
            (*WORKFLOW_LABELS, "failure_reason"), registry=registry)
        self.activity_schedule_to_start = histogram(
            "redurable_activity_schedule_to_start_latency_seconds",
            "From an activity attempt's queueing to a worker taking it", ACTIVITY_LABELS)
        self.activity_execution = histogram(
            "redurable_activity_execution_latency_seconds",
            "From a worker taking an activity attempt to its outcome written", ACTIVITY_LABELS)
        self.activity_failed = p.Counter(
            "redurable_activity_execution_failed",
            "Activity attempts that raised, by reason (the error's type)",
            (*ACTIVITY_LABELS, "failure_reason"), registry=registry)
        self.sticky_routed = p.Counter(
            "redurable_sticky_routed_task",
            "Workflow tasks that reached this worker on its own sticky stream",
            WORKER_LABELS, registry=registry)
        self.request_latency = histogram(
            "redurable_request_latency_seconds",
            "Redis Function calls (one state transition, or a pipeline of them)",
            ("namespace", "operation"))
        self.request_failure = p.Counter(
            "redurable_request_failure",
            "Redis Function calls answered with an error (or not answered)",
            ("namespace", "operation"), registry=registry)
        self._sources: list[weakref.ref[WorkerSource]] = []
        self._lock = threading.Lock()
        registry.register(_WorkerCollector(self))

    def add_source(self, source: WorkerSource) -> None:
        with self._lock:
            self._sources = [r for r in self._sources if r() is not None]
            self._sources.append(weakref.ref(source))

    def remove_source(self, source: WorkerSource) -> None:
        with self._lock:
            self._sources = [r for r in self._sources if r() not in (None, source)]

    def sources(self) -> list[WorkerSource]:
        with self._lock:
            return [s for r in self._sources if (s := r()) is not None]

    def call_observer(self, namespace: str) -> Callable[[Sequence[Any], float, int], None]:
        """What engine.calls.FunctionCaller calls after each call or pipeline."""
        latency = self.request_latency
        failure = self.request_failure
        #: operation -> its latency series (`labels()` is dearer than `observe()`).
        series: dict[str, Any] = {}

        def observe(calls: Sequence[Any], seconds: float, errors: int) -> None:
            first = calls[0].function if calls else "none"
            operation = first if all(c.function == first for c in calls) else "pipeline"
            child = series.get(operation)
            if child is None:
                child = series[operation] = latency.labels(namespace, operation)
            child.observe(seconds)
            if errors:
                failure.labels(namespace, operation).inc(errors)

        return observe


class _WorkerCollector:
    """Reads the workers' own counters and gauges when Prometheus scrapes (from the
    HTTP server's thread: only single-key reads of the stats dicts, which are atomic)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        import prometheus_client.core

        self._core = prometheus_client.core

    def describe(self) -> Iterator[Any]:
        return self._families([])

    def collect(self) -> Iterator[Any]:
        return self._families(self._metrics.sources())

    def _families(self, sources: list[WorkerSource]) -> Iterator[Any]:
        core = self._core
        labels = list(WORKER_LABELS)
        for name, (key, doc) in STATS_COUNTERS.items():
            counter = core.CounterMetricFamily(name, doc, labels=labels)
            for s in sources:
                counter.add_metric([s.namespace, s.task_queue], s.stats.get(key, 0))
            yield counter
        size = core.GaugeMetricFamily(
            "redurable_sticky_cache_size", "Workflows in the worker's cache", labels=labels)
        slots = core.GaugeMetricFamily(
            "redurable_worker_task_slots_available",
            "Free activity slots (max_concurrent_activities minus running)", labels=labels)
        queue_labels = [*labels, "task_type"]
        lag = core.GaugeMetricFamily(
            "redurable_task_queue_lag",
            "Task stream entries not yet delivered to any worker (XINFO GROUPS lag, summed "
            "over shards)", labels=queue_labels)
        pending = core.GaugeMetricFamily(
            "redurable_task_queue_pending",
            "Task stream entries delivered and not yet acknowledged (XINFO GROUPS pending)",
            labels=queue_labels)
        for s in sources:
            size.add_metric([s.namespace, s.task_queue], s.cache_size())
            slots.add_metric([s.namespace, s.task_queue], s.free_activity_slots())
            for (task_type, what), value in list(s.queue.items()):
                family = lag if what == "lag" else pending
                family.add_metric([s.namespace, s.task_queue, task_type], value)
        yield from (size, slots, lag, pending)


_by_registry: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()
_by_registry_lock = threading.Lock()


def metrics_for(registry: Any) -> Metrics:
    """The metric families of `registry` (a prometheus_client CollectorRegistry)."""
    p = prometheus()
    if not isinstance(registry, p.CollectorRegistry):
        raise TypeError(
            f"metrics_registry must be a prometheus_client.CollectorRegistry, "
            f"not {type(registry).__name__}")
    with _by_registry_lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = Metrics(registry)
        return metrics


def new_registry() -> Any:
    return prometheus().CollectorRegistry()


def serve(registry: Any, bind: int | str) -> Any:
    """Serve `registry` at http://<bind>/metrics: `bind` a port (all interfaces) or
    "host:port". Returns the server (`.server_port`, `.shutdown()`)."""
    host, port = "0.0.0.0", bind
    if isinstance(bind, str):
        host, _, text = bind.rpartition(":")
        port = int(text)
    server, _thread = prometheus().start_http_server(int(port), addr=host or "0.0.0.0",
                                                     registry=registry)
    return server
