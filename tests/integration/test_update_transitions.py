"""The update transitions driven by hand, without a worker, on fakeredis and a real
server: what rd_update, rd_wft_start and rd_wft_complete do with admitted updates
(docs/design-notes.md "Updates")."""

from __future__ import annotations

from typing import Any

import pytest

from engine import commands as cmd
from engine.errors import PayloadError, RedurableError, WorkflowNotFoundError, to_failure
from engine.machine import LOGIC_FLAGS
from engine.store import WorkflowTaskStart
from engine.update_calls import admit_update, read_update
from engine.updates import UpdateRequest, WorkflowUpdateStage
from sdk import Client, workflow

pytestmark = pytest.mark.anyio


@workflow.defn
class Typed:
    @workflow.update
    def add(self, n: int) -> int:
        return n

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


class Task:
    """The workflow's one task entry, taken as a worker would."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self.client, self.id = client, workflow_id

    async def take(self) -> tuple[str, str, dict[bytes, bytes]]:
        store = self.client.store
        await store.ensure_groups("q")
        stream = self.client.keys.workflow_tasks(self.client.keys.shard(self.id), "q")
        [entry] = await store.read_group("test", [stream], 1, 10)
        return entry

    async def start(self) -> tuple[WorkflowTaskStart, str, str, str]:
        stream, msg_id, fields = await self.take()
        store = self.client.store
        epoch, run_id = fields[b"epoch"].decode(), fields[b"run_id"].decode()
        reply = await store.call(store.wft_start_call(self.id, run_id, epoch, msg_id, stream,
                                                      None, 10_000))
        started = store.parse_wft_start(reply)
        assert started is not None
        return started, stream, msg_id, epoch

    async def complete(self, commands: list[cmd.Command]) -> Any:
        started, stream, msg_id, epoch = await self.start()
        store = self.client.store
        run_id = started.entries[0][1].run_id if started.entries else ""  # type: ignore[attr-defined]
        reply = await store.call(store.wft_complete_call(
            self.id, run_id, epoch, started.token, msg_id, stream, "test", started.now_ms,
            LOGIC_FLAGS, commands))
        return store.parse_wft_complete(reply), started


async def history_types(client: Client, workflow_id: str) -> list[str]:
    return [e.type async for e in client.get_workflow_handle(workflow_id).fetch_history()]


async def test_an_update_waiting_holds_the_close_back(client: Client) -> None:
    await client.start_workflow("W", id="w1", task_queue="q")
    task = Task(client, "w1")
    started, stream, msg_id, epoch = await task.start()
    assert started.updates == []
    # An update comes while the task runs: the task's completion may not close the run.
    state = await admit_update(client.store, "w1", "", "u1", "go", client.codec.encode([]))
    assert state.stage is WorkflowUpdateStage.ADMITTED
    store = client.store
    run_id = started.entries[0][1].run_id  # type: ignore[attr-defined]
    reply = await store.call(store.wft_complete_call(
        "w1", run_id, epoch, started.token, msg_id, stream, "test", started.now_ms,
        LOGIC_FLAGS, [cmd.CompleteWorkflow(client.codec.encode(None))]))
    commit = store.parse_wft_complete(reply)
    assert not isinstance(commit, str)
    assert (commit.closed, commit.close_dropped) == (False, True)
    # The next task hands the update over.
    again, *_ = await task.start()
    assert again.updates == [UpdateRequest("u1", "go", client.codec.encode([]))]


async def test_a_task_that_only_rejects_writes_nothing(client: Client) -> None:
    await client.start_workflow("W", id="w2", task_queue="q")
    task = Task(client, "w2")
    await task.complete([])
    before = await history_types(client, "w2")
    assert before == ["WorkflowExecutionStarted", "WorkflowTaskCompleted"]
    await admit_update(client.store, "w2", "", "bad", "go", client.codec.encode([]))
    rejected, started = await task.complete(
        [cmd.RejectUpdate("bad", to_failure(ValueError("no")))])
    assert started.updates == [UpdateRequest("bad", "go", client.codec.encode([]))]
    assert not isinstance(rejected, str) and rejected.last_event_id == 2
    assert await history_types(client, "w2") == before
    state = await read_update(client.store, "w2", "bad")
    assert state is not None
    assert (state.stage, state.outcome) == (WorkflowUpdateStage.COMPLETED, "rejected")
    assert state.failure["message"] == "no"
    # Known id: the same answer, nothing admitted again.
    again = await admit_update(client.store, "w2", "", "bad", "go", client.codec.encode([]))
    assert again.outcome == "rejected"
    assert await client.store.get_fields("w2", "wft") == [b"none"]


async def test_calls_that_fail_at_the_caller(client: Client) -> None:
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("missing").execute_update("add", 1)
    handle = await client.start_workflow(Typed.run, id="typed", task_queue="q")
    with pytest.raises(PayloadError):
        await handle.execute_update(Typed.add, "not a number")
    with pytest.raises(RedurableError, match="no update with id 'nope'"):
        await handle.get_workflow_update_handle("nope").result()
    with pytest.raises(ValueError, match="wait_for_stage"):
        await handle.start_update(Typed.add, 1, wait_for_stage=WorkflowUpdateStage.ADMITTED)
