"""Interceptors (docs/interceptors.md), on fakeredis and a real server: the client's
calls, activity attempts and workflow runs go through the chains, in order; headers
set by interceptors are recorded in history with the start, signals and activity
tasks, so a replay (another worker, no cache) sees the same ones."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import Client, InvalidArgumentError, activity, workflow
from sdk.interceptor import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    CancelWorkflowInput,
    ClientInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartActivityInput,
    StartWorkflowInput,
    TerminateWorkflowInput,
    WorkerInterceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from sdk.testing import running_worker
from tests.integration.helpers import intercepted

pytestmark = pytest.mark.anyio
#: What the interceptors saw, in order (the workflow side records while not replaying
#: too: replays must see the same headers).
SEEN: list[tuple[str, Any]] = []


@activity.defn
async def greet(name: str) -> str:
    activity.heartbeat("half way")
    return f"hello {name} ({activity.info().activity_type})"


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.names: list[str] = []

    @workflow.signal
    def add(self, name: str) -> None:
        self.names.append(name)

    @workflow.query
    def count(self) -> int:
        return len(self.names)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: len(self.names) >= 1)
        assert workflow.info().workflow_type == "Greeter"
        return [await workflow.execute_activity(greet, n, start_to_close_timeout=timedelta(
            seconds=10)) for n in self.names]


class _ClientOut(OutboundInterceptor):
    async def start_workflow(self, input: StartWorkflowInput) -> Any:
        SEEN.append(("client.start", input.workflow))
        input.headers = {**input.headers, "from": "client"}
        return await self.next.start_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        SEEN.append(("client.signal", input.signal))
        input.headers = {**input.headers, "signal": input.args[0]}
        await self.next.signal_workflow(input)

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        SEEN.append(("client.query", input.query))
        return await self.next.query_workflow(input)

    async def cancel_workflow(self, input: CancelWorkflowInput) -> None:
        SEEN.append(("client.cancel", input.id))
        await self.next.cancel_workflow(input)

    async def terminate_workflow(self, input: TerminateWorkflowInput) -> None:
        SEEN.append(("client.terminate", input.reason))
        await self.next.terminate_workflow(input)


class _ActivityOut(ActivityOutboundInterceptor):
    def heartbeat(self, *details: Any) -> None:
        SEEN.append(("activity.heartbeat", details))
        super().heartbeat(*details)


class _ActivityIn(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_ActivityOut(outbound))

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        SEEN.append(("activity.execute", dict(input.headers)))
        return await self.next.execute_activity(input)


class _WorkflowOut(WorkflowOutboundInterceptor):
    def info(self) -> Any:
        SEEN.append(("workflow.info", None))
        return super().info()

    def start_activity(self, input: StartActivityInput) -> asyncio.Future[Any]:
        input.headers = {**input.headers, "activity": input.args[0]}
        return self.next.start_activity(input)


class _WorkflowIn(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOut(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        SEEN.append(("workflow.execute", dict(input.headers)))
        return await self.next.execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        SEEN.append(("workflow.signal", dict(input.headers)))
        await self.next.handle_signal(input)

    def handle_query(self, input: HandleQueryInput) -> Any:
        SEEN.append(("workflow.query", input.query))
        return self.next.handle_query(input)


class Recording(ClientInterceptor, WorkerInterceptor):
    """A client and worker interceptor in one (as the tracing interceptor is)."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _ClientOut(next)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityIn(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _WorkflowIn


def _intercepted(client: Client) -> Client:
    """The same connection, with the Recording interceptor."""
    return intercepted(client, Recording())


async def test_calls_and_headers_go_through_the_chains(client: Client) -> None:
    SEEN.clear()
    ic = _intercepted(client)
    # The client's interceptor is also a worker interceptor: the worker takes it. No
    # cache: every workflow task replays the history, and must see the same headers.
    async with running_worker(ic, task_queue="i", workflows=[Greeter], activities=[greet],
                              max_cached_workflows=0):
        handle = await ic.start_workflow(Greeter.run, id="g-1", task_queue="i")
        await handle.signal(Greeter.add, "ann")
        assert await handle.result() == ["hello ann (greet)"]
        assert await handle.query(Greeter.count) == 1

    assert ("client.start", "Greeter") in SEEN
    assert ("client.signal", "add") in SEEN
    assert ("client.query", "count") in SEEN
    assert ("workflow.query", "count") in SEEN
    assert ("workflow.info", None) in SEEN
    starts = [h for kind, h in SEEN if kind == "workflow.execute"]
    assert len(starts) >= 2  # replayed at least once (no cache)
    assert all(h == {"from": "client"} for h in starts)
    signals = [h for kind, h in SEEN if kind == "workflow.signal"]
    assert signals and all(h == {"signal": "ann"} for h in signals)
    assert ("activity.execute", {"activity": "ann"}) in SEEN
    assert ("activity.heartbeat", ("half way",)) in SEEN

    history = {e.type: e.attributes async for e in handle.fetch_history()}
    assert history["WorkflowExecutionStarted"]["header"] == {"from": "client"}
    assert history["WorkflowExecutionSignaled"]["header"] == {"signal": "ann"}
    assert history["ActivityTaskScheduled"]["options"]["header"] == {"activity": "ann"}


async def test_cancel_and_terminate_are_intercepted(client: Client) -> None:
    SEEN.clear()
    ic = _intercepted(client)
    for wf_id in ("c-1", "c-2"):
        await ic.start_workflow(Greeter.run, id=wf_id, task_queue="nobody")
    await ic.get_workflow_handle("c-1").cancel()
    await ic.get_workflow_handle("c-2").terminate(reason="enough")
    assert ("client.cancel", "c-1") in SEEN
    assert ("client.terminate", "enough") in SEEN
    assert (await ic.get_workflow_handle("c-2").describe()).status == "TERMINATED"


async def test_no_headers_leaves_history_as_it_was(client: Client) -> None:
    async with running_worker(client, task_queue="n", workflows=[Greeter], activities=[greet]):
        handle = await client.start_workflow(Greeter.run, id="n-1", task_queue="n")
        await handle.signal(Greeter.add, "bo")
        await handle.result()
    async for event in handle.fetch_history():
        assert "header" not in event.attributes
        assert "header" not in event.attributes.get("options", {})


async def test_header_values_must_be_json(client: Client) -> None:
    class Bad(ClientInterceptor):
        def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
            class Out(OutboundInterceptor):
                async def start_workflow(self, input: StartWorkflowInput) -> Any:
                    input.headers = {"x": object()}
                    return await self.next.start_workflow(input)
            return Out(next)

    bad = Client(client.redis, prefix=client.keys.prefix, interceptors=[Bad()])
    with pytest.raises(InvalidArgumentError, match="headers must be JSON"):
        await bad.start_workflow(Greeter.run, id="bad-1", task_queue="q")


async def test_interceptors_run_in_order(client: Client) -> None:
    order: list[str] = []

    def named(name: str) -> ClientInterceptor:
        class One(ClientInterceptor):
            def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
                class Out(OutboundInterceptor):
                    async def start_workflow(self, input: StartWorkflowInput) -> Any:
                        order.append(name)
                        return await self.next.start_workflow(input)
                return Out(next)
        return One()

    ordered = Client(client.redis, prefix=client.keys.prefix,
                     interceptors=[named("first"), named("second")])
    await ordered.start_workflow(Greeter.run, id="o-1", task_queue="q")
    assert order == ["first", "second"]
    with anyio.fail_after(5):
        await ordered.get_workflow_handle("o-1").terminate()
