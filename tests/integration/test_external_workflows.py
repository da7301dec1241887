"""External workflow handles end to end, on fakeredis and a real server: a signal and a
cancel request sent from workflow code to a workflow in another shard, recorded in the
sender's history with their outcome; a missing or closed target fails the sender's
await with a clear error instead of waiting for ever."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from sdk import (
    ApplicationError,
    CancelledError,
    Client,
    Replayer,
    Worker,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    workflow,
)
from tests.integration.helpers import event_types, other_shard_id, queue_worker

pytestmark = pytest.mark.anyio


@workflow.defn
class Receiver:
    def __init__(self) -> None:
        self.got: list[str] = []

    @workflow.signal
    def hello(self, who: str) -> None:
        self.got.append(who)

    @workflow.run
    async def run(self, wanted: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.got) >= wanted)
        return self.got


@workflow.defn
class Sender:
    """Signals (or, with cancel=True, cancels) another workflow and reports the outcome."""

    @workflow.run
    async def run(self, target: str, cancel: bool) -> str:
        handle = workflow.get_external_workflow_handle(target)
        try:
            if cancel:
                await handle.cancel()
            else:
                await handle.signal(Receiver.hello, workflow.info().workflow_id)
        except ApplicationError as err:
            return f"failed:{err.type}"
        return "ok"


WORKFLOWS = [Receiver, Sender]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    return queue_worker(client, {"workflows": WORKFLOWS}, options)


async def test_signal_a_workflow_in_another_shard(client: Client) -> None:
    target = other_shard_id(client, "s-1", "r")
    async with worker(client):
        receiver = await client.start_workflow(Receiver.run, 1, id=target, task_queue="q")
        sender = await client.start_workflow(Sender.run, target, False, id="s-1",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await sender.result() == "ok"
            assert await receiver.result() == ["s-1"]
    types = await event_types(client, "s-1")
    assert [t for t in types if "External" in t] == [
        "SignalExternalWorkflowExecutionInitiated",
        "ExternalWorkflowExecutionSignaled",
    ]
    events = [e async for e in client.get_workflow_handle("s-1").fetch_history()]
    initiated = next(e for e in events if e.type == "SignalExternalWorkflowExecutionInitiated")
    assert initiated.attributes["workflow_id"] == target
    assert initiated.attributes["signal_name"] == "hello"
    await Replayer(workflows=[Sender]).replay_workflow(
        client.get_workflow_handle("s-1").fetch_history())


async def test_signal_to_a_missing_workflow_fails_the_await(client: Client) -> None:
    async with worker(client):
        sender = await client.start_workflow(Sender.run, "nobody", False, id="s-2",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await sender.result() == "failed:EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND"
    assert "SignalExternalWorkflowExecutionFailed" in await event_types(client, "s-2")


async def test_signal_to_a_closed_workflow_fails_the_await(client: Client) -> None:
    async with worker(client):
        done = await client.start_workflow(Receiver.run, 0, id="r-done", task_queue="q")
        with anyio.fail_after(15):
            assert await done.result() == []
        sender = await client.start_workflow(Sender.run, "r-done", False, id="s-3",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await sender.result() == "failed:EXTERNAL_WORKFLOW_EXECUTION_NOT_RUNNING"


async def test_cancel_a_workflow_in_another_shard(client: Client) -> None:
    target = other_shard_id(client, "s-4", "rc")
    async with worker(client):
        receiver = await client.start_workflow(Receiver.run, 1, id=target, task_queue="q")
        sender = await client.start_workflow(Sender.run, target, True, id="s-4",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await sender.result() == "ok"
            with pytest.raises(WorkflowFailureError) as info:
                await receiver.result()
    assert isinstance(info.value.cause, CancelledError)
    assert (await receiver.describe()).status == WorkflowExecutionStatus.CANCELED
    assert [t for t in await event_types(client, "s-4") if "External" in t] == [
        "RequestCancelExternalWorkflowExecutionInitiated",
        "ExternalWorkflowExecutionCancelRequested",
    ]


async def test_cancel_a_missing_workflow_fails_the_await(client: Client) -> None:
    async with worker(client):
        sender = await client.start_workflow(Sender.run, "nobody", True, id="s-5",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await sender.result() == "failed:EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND"
    assert "RequestCancelExternalWorkflowExecutionFailed" in await event_types(client, "s-5")


async def test_external_handle_outside_workflow_code_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not in workflow code"):
        workflow.get_external_workflow_handle("x")
