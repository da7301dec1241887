"""Interceptors (docs/interceptors.md) for updates, child workflows, signals sent from
workflow code and local activities, on fakeredis and a real server: the calls go
through the chains, and the headers of a child's start and of signals from workflow
code are recorded in history and reach the other workflow's inbound interceptor, on
live runs and replays alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import ApplicationError, Client, WorkflowUpdateFailedError, activity, workflow
from sdk.interceptor import (
    ClientInterceptor,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    OutboundInterceptor,
    SignalChildWorkflowInput,
    SignalExternalWorkflowInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    StartWorkflowUpdateInput,
    WorkerInterceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from sdk.testing import running_worker
from tests.integration.helpers import intercepted

pytestmark = pytest.mark.anyio
SEEN: list[tuple[str, Any]] = []


@activity.defn
async def double(n: int) -> int:
    return n * 2


@workflow.defn
class Kid:
    def __init__(self) -> None:
        self.got: list[str] = []

    @workflow.signal
    def poke(self, what: str) -> None:
        self.got.append(what)

    @workflow.run
    async def run(self, n: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.got) >= 2)
        return [*self.got, str(n)]


@workflow.defn
class Parent:
    def __init__(self) -> None:
        self.total = 0

    @workflow.update
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @add.validator
    def check_add(self, n: int) -> None:
        if n < 0:
            raise ApplicationError("negative")

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.total >= 3)
        doubled = await workflow.execute_local_activity(
            double, 21, start_to_close_timeout=timedelta(seconds=10))
        child = await workflow.start_child_workflow(Kid.run, doubled, id="kid-1")
        await child.signal(Kid.poke, "from-handle")
        await workflow.get_external_workflow_handle("kid-1").signal(Kid.poke, "from-external")
        return list(await child)


class _ClientOut(OutboundInterceptor):
    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> Any:
        SEEN.append(("client.update", (input.update, list(input.args))))
        return await self.next.start_workflow_update(input)


class _WorkflowOut(WorkflowOutboundInterceptor):
    def start_local_activity(self, input: StartLocalActivityInput) -> asyncio.Future[Any]:
        SEEN.append(("workflow.local_activity", input.activity))
        return self.next.start_local_activity(input)

    async def start_child_workflow(self, input: StartChildWorkflowInput) -> Any:
        SEEN.append(("workflow.start_child", (input.workflow, input.id)))
        input.headers = {**input.headers, "parent": workflow.info().workflow_id}
        return await self.next.start_child_workflow(input)

    async def signal_child_workflow(self, input: SignalChildWorkflowInput) -> None:
        input.headers = {**input.headers, "via": "child-handle"}
        await self.next.signal_child_workflow(input)

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        input.headers = {**input.headers, "via": "external"}
        await self.next.signal_external_workflow(input)


class _WorkflowIn(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOut(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        SEEN.append(("workflow.execute", (workflow.info().workflow_type, dict(input.headers))))
        return await self.next.execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        SEEN.append(("workflow.signal", (input.args[0], dict(input.headers))))
        await self.next.handle_signal(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        SEEN.append(("workflow.validate", (input.id, input.update, list(input.args))))
        self.next.handle_update_validator(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        SEEN.append(("workflow.update", (input.id, input.update, list(input.args))))
        return await self.next.handle_update_handler(input)


class Recording(ClientInterceptor, WorkerInterceptor):
    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _ClientOut(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _WorkflowIn


def _intercepted(client: Client) -> Client:
    return intercepted(client, Recording())


async def test_updates_children_signals_and_local_activities(client: Client) -> None:
    SEEN.clear()
    ic = _intercepted(client)
    # No cache: every task replays, and must see the same headers as the live run.
    async with running_worker(ic, task_queue="cu", workflows=[Parent, Kid],
                              activities=[double], max_cached_workflows=0):
        handle = await ic.start_workflow(Parent.run, id="parent-1", task_queue="cu")
        assert await handle.execute_update(Parent.add, 3, id="u-1") == 3
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(Parent.add, -1, id="u-2")
        with anyio.fail_after(30):
            assert await handle.result() == ["from-handle", "from-external", "42"]

    assert ("client.update", ("add", [3])) in SEEN
    assert ("client.update", ("add", [-1])) in SEEN
    assert ("workflow.validate", ("u-1", "add", [3])) in SEEN
    assert ("workflow.validate", ("u-2", "add", [-1])) in SEEN
    assert ("workflow.update", ("u-1", "add", [3])) in SEEN
    assert ("workflow.update", ("u-2", "add", [-1])) not in SEEN  # rejected
    assert ("workflow.local_activity", "double") in SEEN
    assert ("workflow.start_child", ("Kid", "kid-1")) in SEEN
    kid_starts = [h for kind, (t, h) in
                  ((k, v) for k, v in SEEN if k == "workflow.execute") if t == "Kid"]
    assert len(kid_starts) >= 2 and all(h == {"parent": "parent-1"} for h in kid_starts)
    signals = {(what, tuple(h.items())) for kind, (what, h) in
               ((k, v) for k, v in SEEN if k == "workflow.signal")}
    assert signals == {("from-handle", (("via", "child-handle"),)),
                       ("from-external", (("via", "external"),))}

    kid = ic.get_workflow_handle("kid-1")
    kid_history = [e async for e in kid.fetch_history()]
    assert kid_history[0].attributes["header"] == {"parent": "parent-1"}
    assert [e.attributes["header"] for e in kid_history
            if e.type == "WorkflowExecutionSignaled"] == [
        {"via": "child-handle"}, {"via": "external"}]
    sent = [e.attributes.get("header") async for e in handle.fetch_history()
            if e.type == "SignalExternalWorkflowExecutionInitiated"]
    assert sent == [{"via": "child-handle"}, {"via": "external"}]


async def test_children_and_signals_without_headers_leave_history_as_it_was(
    client: Client,
) -> None:
    async with running_worker(client, task_queue="nh", workflows=[Parent, Kid],
                              activities=[double]):
        handle = await client.start_workflow(Parent.run, id="parent-2", task_queue="nh")
        await handle.execute_update(Parent.add, 5)
        with anyio.fail_after(30):
            await handle.result()
    for wf in (handle, client.get_workflow_handle("kid-1")):
        async for event in wf.fetch_history():
            assert "header" not in event.attributes
            assert "header" not in (event.attributes.get("options") or {})
