"""Prometheus metrics of workers and clients (docs/metrics.md), on fakeredis and a real
server: task latencies by workflow and activity type, failures by reason, the cache's
counters, request latency, the queue's lag from XINFO GROUPS, and /metrics served."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

import anyio
import pytest
from prometheus_client import CollectorRegistry

from sdk import ApplicationError, Client, RetryPolicy, Worker, activity, workflow
from sdk.testing import running_worker
from tests.conftest import unique_prefix

pytestmark = pytest.mark.anyio
ACTIVITY_ATTEMPTS: dict[str, int] = {}


@activity.defn
async def flaky(key: str) -> str:
    ACTIVITY_ATTEMPTS[key] = ACTIVITY_ATTEMPTS.get(key, 0) + 1
    if ACTIVITY_ATTEMPTS[key] == 1:
        raise ApplicationError("first attempt fails", type="Flaky")
    return key.upper()


@workflow.defn
class Metered:
    @workflow.run
    async def run(self, key: str) -> str:
        return str(await workflow.execute_activity(
            flaky, key, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10))))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_worker_and_client_metrics(client: Client) -> None:
    registry = CollectorRegistry()
    client.store.call_observer = None  # the worker's registry takes the calls
    key = unique_prefix()
    async with running_worker(client, task_queue="m", workflows=[Metered],
                              activities=[flaky], metrics_registry=registry):
        result = await client.execute_workflow(Metered.run, key, id=key, task_queue="m")
        assert result == key.upper()
        ns = client.keys.prefix
        wf = {"namespace": ns, "task_queue": "m", "workflow_type": "Metered"}
        act = {"namespace": ns, "task_queue": "m", "activity_type": "flaky"}
        # Start, first activity failure, retry result: three workflow tasks at least
        # would be two here (the retry is the server's timer, not a workflow task).
        assert value(registry, "redurable_workflow_task_schedule_to_start_latency_seconds_count",
                     **wf) >= 2
        assert value(registry, "redurable_workflow_task_execution_latency_seconds_count",
                     **wf) >= 2
        assert value(registry, "redurable_activity_schedule_to_start_latency_seconds_count",
                     **act) == 2
        assert value(registry, "redurable_activity_execution_latency_seconds_count", **act) == 2
        assert value(registry, "redurable_activity_execution_failed_total",
                     **act, failure_reason="Flaky") == 1
        w = {"namespace": ns, "task_queue": "m"}
        assert value(registry, "redurable_workflow_task_new_run_total", **w) == 1
        assert value(registry, "redurable_sticky_cache_hit_total", **w) >= 1
        assert value(registry, "redurable_activity_task_completed_total", **w) == 2
        assert value(registry, "redurable_worker_task_slots_available", **w) == 100
        assert value(registry, "redurable_request_latency_seconds_count",
                     namespace=ns, operation="rd_start") == 1
        assert value(registry, "redurable_request_latency_seconds_count",
                     namespace=ns, operation="rd_wft_complete") >= 1


async def test_workflow_task_failure_by_reason(client: Client) -> None:
    @workflow.defn(name="Broken")
    class Broken:
        @workflow.run
        async def run(self) -> None:
            raise RuntimeError("a bug")  # fails the workflow task, retried

    registry = CollectorRegistry()
    async with running_worker(client, task_queue="b", workflows=[Broken],
                              metrics_registry=registry):
        await client.start_workflow(Broken.run, id="broken", task_queue="b")
        labels = {"namespace": client.keys.prefix, "task_queue": "b",
                  "workflow_type": "Broken", "failure_reason": "RuntimeError"}
        with anyio.fail_after(10):
            while not value(registry, "redurable_workflow_task_execution_failed_total",
                            **labels):
                await anyio.sleep(0.02)
        await client.get_workflow_handle("broken").terminate()


async def test_queue_lag_from_xinfo_groups(real_client: Client) -> None:
    registry = CollectorRegistry()
    worker = Worker(real_client, task_queue="lag", workflows=[Metered],
                    activities=[flaky], metrics_registry=registry)
    await real_client.store.ensure_groups("lag", None)
    for i in range(3):
        await real_client.start_workflow(Metered.run, "x", id=f"lag-{i}", task_queue="lag")
    assert worker.metrics is not None
    worker.metrics.start()
    try:
        await worker.metrics.poll_lag()
        labels = {"namespace": real_client.keys.prefix, "task_queue": "lag"}
        assert value(registry, "redurable_task_queue_lag", **labels, task_type="workflow") == 3
        assert value(registry, "redurable_task_queue_pending", **labels,
                     task_type="workflow") == 0
        assert value(registry, "redurable_task_queue_lag", **labels, task_type="activity") == 0
    finally:
        worker.metrics.stop()


async def test_metrics_port_serves_the_text_format(real_client: Client) -> None:
    async with running_worker(real_client, task_queue="p", workflows=[Metered],
                              activities=[flaky], metrics_port="127.0.0.1:0") as worker:
        assert worker.metrics is not None
        with anyio.fail_after(10):  # served once run() has joined the queue
            while not worker.metrics.port:
                await anyio.sleep(0.01)
        key = unique_prefix()
        await real_client.execute_workflow(Metered.run, key, id=key, task_queue="p")
        url = f"http://127.0.0.1:{worker.metrics.port}/metrics"
        body = await anyio.to_thread.run_sync(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert "redurable_workflow_task_execution_latency_seconds_bucket{" in body
    assert 'workflow_type="Metered"' in body
    assert "redurable_sticky_cache_size{" in body


async def test_client_metrics_registry(redis_url: str) -> None:
    registry = CollectorRegistry()
    prefix = unique_prefix()
    client = await Client.connect(redis_url, prefix=prefix, metrics_registry=registry)
    try:
        await client.start_workflow("Nobody", id="c-1", task_queue="none")
        assert value(registry, "redurable_request_latency_seconds_count",
                     namespace=prefix, operation="rd_start") == 1
        await client.get_workflow_handle("c-1").signal("go")
        assert value(registry, "redurable_request_latency_seconds_count",
                     namespace=prefix, operation="rd_signal") == 1
        # The same registry for a second client: the families are shared, not doubled.
        other = await Client.connect(redis_url, prefix=prefix, metrics_registry=registry)
        await other.close()
    finally:
        async for k in client.redis.scan_iter(match=f"{prefix}:*"):
            await client.redis.delete(k)
        await client.close()


async def test_registry_must_be_a_collector_registry(fake_client: Client) -> None:
    with pytest.raises(TypeError, match="CollectorRegistry"):
        Worker(fake_client, task_queue="q", workflows=[Metered], metrics_registry=object())


async def test_dead_letters_are_counted(client: Client) -> None:
    registry = CollectorRegistry()
    await client.store.ensure_groups("dl")
    await client.redis.xadd(client.keys.workflow_tasks(0, "dl"), {"garbage": "1"})
    labels = {"namespace": client.keys.prefix, "task_queue": "dl"}
    async with running_worker(client, task_queue="dl", workflows=[Metered],
                              metrics_registry=registry):
        with anyio.fail_after(10):
            while not value(registry, "redurable_task_dead_lettered_total", **labels):
                await anyio.sleep(0.02)
        assert value(registry, "redurable_task_dead_lettered_total", **labels) == 1


async def test_nothing_is_hooked_without_metrics(fake_client: Client) -> None:
    worker = Worker(fake_client, task_queue="q", workflows=[Metered])
    assert worker.metrics is None
    assert fake_client.store.call_observer is None
