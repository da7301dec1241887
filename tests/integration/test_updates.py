"""Workflow updates end to end, on fakeredis and a real server (the `client` fixture):
execute/start_update, validators (a rejection writes no history), handler failures,
update ids applied once (also after a worker restart), a closed workflow, replay of
accepted updates, and workflow.all_handlers_finished."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from sdk import (
    ApplicationError,
    Client,
    Replayer,
    Worker,
    WorkflowNotRunningError,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
    workflow,
)
from tests.integration.helpers import event_types, eventually, queue_worker

pytestmark = pytest.mark.anyio


@workflow.defn
class Tips:
    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @workflow.update
    async def add_tip(self, amount: int) -> int:
        self.total += amount
        return self.total

    @add_tip.validator
    def _check_tip(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"a tip must be positive, not {amount}")

    @workflow.update(name="setDone")
    def set_done(self, word: str) -> str:
        self.done = True
        return f"done: {word}"

    @workflow.update
    async def slow_tip(self, amount: int) -> int:
        await workflow.sleep(0.3)
        self.total += amount
        return self.total

    @workflow.update
    async def failing(self) -> None:
        raise ApplicationError("no tips today", type="Closed")

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def get_total(self) -> int:
        return self.total

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        # Let update handlers still running end first (temporalio's idiom).
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.total


@workflow.defn
class Hasty:
    """Returns as soon as it is told to, whatever handlers still run."""

    def __init__(self) -> None:
        self.done = False

    @workflow.update
    async def slow(self) -> str:
        await workflow.sleep(60)
        return "never"

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)


WORKFLOWS = [Tips, Hasty]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    return queue_worker(client, {"workflows": WORKFLOWS}, options)


async def test_execute_update_returns_the_handler_result(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Tips.run, id="tips-1", task_queue="q")
        assert await handle.execute_update(Tips.add_tip, 5) == 5
        assert await handle.execute_update(Tips.add_tip, 3, id="tip-2") == 8
        assert await handle.execute_update("add_tip", args=[2]) == 10
        assert await handle.execute_update(Tips.set_done, "ok") == "done: ok"
        assert await handle.result() == 10
    types = await event_types(client, "tips-1")
    assert types.count("WorkflowExecutionUpdateAccepted") == 4
    assert types.count("WorkflowExecutionUpdateCompleted") == 4
    events = [e async for e in client.get_workflow_handle("tips-1").fetch_history()]
    accepted = [e for e in events if e.type == "WorkflowExecutionUpdateAccepted"]
    assert accepted[1].attributes["update_id"] == "tip-2"
    assert accepted[1].attributes["name"] == "add_tip"
    completed = [e for e in events if e.type == "WorkflowExecutionUpdateCompleted"]
    assert completed[1].attributes["result"] == 8


async def test_rejection_writes_no_history(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Tips.run, id="tips-rej", task_queue="q")
        assert await handle.execute_update(Tips.add_tip, 1) == 1
        before = await event_types(client, "tips-rej")
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(Tips.add_tip, -4, id="bad-tip")
        assert "positive" in str(info.value.cause)
        # start_update raises too: a rejection is known once the update is settled.
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.start_update(Tips.add_tip, -1,
                                      wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        with pytest.raises(WorkflowUpdateFailedError) as unknown:
            await handle.execute_update("no_such_update", 1)
        assert "no_such_update" in str(unknown.value.cause)
        assert await event_types(client, "tips-rej") == before
        # The same id again: the same rejection, nothing run again.
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(Tips.add_tip, -4, id="bad-tip")
        assert await handle.query(Tips.get_total) == 1
        await handle.signal(Tips.finish)
        assert await handle.result() == 1


async def test_handler_failure_raises_update_failed(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Tips.run, id="tips-fail", task_queue="q")
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(Tips.failing)
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "Closed"
        await handle.signal(Tips.finish)
        assert await handle.result() == 0
    assert (await event_types(client, "tips-fail")).count("WorkflowExecutionUpdateCompleted") == 1


async def test_start_update_and_update_handles(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Tips.run, id="tips-start", task_queue="q")
        uh = await handle.start_update(Tips.slow_tip, 7, id="slow-1",
                                       wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        assert uh.id == "slow-1"
        again = handle.get_workflow_update_handle("slow-1")
        assert await uh.result() == 7
        assert await again.result() == 7
        # all_handlers_finished: the workflow waits for a running handler.
        slow = await handle.start_update(Tips.slow_tip, 1,
                                         wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await handle.signal(Tips.finish)
        assert await handle.result() == 8
        assert await slow.result() == 8


async def test_same_update_id_is_applied_once(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Tips.run, id="tips-dedup", task_queue="q")
        results = []
        async with anyio.create_task_group() as tg:
            async def send() -> None:
                results.append(await handle.execute_update(Tips.add_tip, 5, id="once"))
            for _ in range(5):
                tg.start_soon(send)
        assert results == [5] * 5
        assert await handle.execute_update(Tips.add_tip, 5, id="once") == 5
        assert await handle.query(Tips.get_total) == 5
    # After a worker restart: the outcome is durable in the workflow's shard.
    async with worker(client):
        assert await handle.execute_update(Tips.add_tip, 5, id="once") == 5
        assert await handle.execute_update(Tips.add_tip, 1, id="next") == 6
        await handle.signal(Tips.finish)
        assert await handle.result() == 6
    assert (await event_types(client, "tips-dedup")).count("WorkflowExecutionUpdateAccepted") == 2


async def test_update_on_a_closed_workflow_fails_clearly(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Tips.run, id="tips-closed", task_queue="q")
        assert await handle.execute_update(Tips.add_tip, 2, id="before") == 2
        await handle.signal(Tips.finish)
        assert await handle.result() == 2
        with pytest.raises(WorkflowNotRunningError):
            await handle.execute_update(Tips.add_tip, 1)
        # An update applied before the close still answers its outcome.
        assert await handle.execute_update(Tips.add_tip, 2, id="before") == 2


async def test_workflow_closing_before_the_handler_ends(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Hasty.run, id="hasty", task_queue="q")
        uh = await handle.start_update(Hasty.slow, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await handle.signal(Hasty.finish)
        await handle.result()
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await uh.result()
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == "AcceptedUpdateCompletedWorkflow"


async def test_update_before_a_worker_runs_and_replay(client: Client) -> None:
    handle = await client.start_workflow(Tips.run, id="tips-late", task_queue="q")
    async with anyio.create_task_group() as tg:
        results: list[int] = []

        async def send() -> None:
            results.append(await handle.execute_update(Tips.add_tip, 4, id="early"))

        tg.start_soon(send)
        await anyio.sleep(0.1)
        async with worker(client):
            await eventually(lambda: _has(results))
            assert results == [4]
            # A fresh worker (empty cache) replays the accepted update's handler.
            pass
    async with worker(client, max_cached_workflows=0):
        assert await handle.execute_update(Tips.slow_tip, 1) == 5
        assert await handle.query(Tips.get_total) == 5
        await handle.signal(Tips.finish)
        assert await handle.result() == 5
    history = await client.get_workflow_handle("tips-late").fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)


async def _has(results: list[int]) -> bool:
    return bool(results)
