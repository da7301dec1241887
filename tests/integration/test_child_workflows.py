"""Child workflows end to end, on fakeredis and a real server: start and result across
shards through the outbox hand-off, the child's events in the parent's history, id
conflicts, failure causes, cancelling a child, signalling it, parent close policies,
the parent link in describe, and a hand-off entry left by a dead worker applied once."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine.handoff import apply_call, ensure_outbox_groups, outbox_streams
from engine.keys import GROUP
from sdk import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    Client,
    ParentClosePolicy,
    Replayer,
    TerminatedError,
    Worker,
    WorkflowAlreadyStartedError,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    workflow,
)
from sdk.worker.handoff import Handoffs
from tests.integration.helpers import event_types, eventually, other_shard_id, queue_worker
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.anyio


@workflow.defn
class Child:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, value: int, wait: bool) -> dict[str, Any]:
        if wait:
            await workflow.wait_condition(lambda: self.go)
        if value < 0:
            raise ApplicationError("negative", type="Negative", non_retryable=True)
        parent = workflow.info().parent
        return {"double": value * 2, "parent": None if parent is None else parent.workflow_id}


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, child_id: str, value: int) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_child_workflow(
            Child.run, value, False, id=child_id)
        return result


@workflow.defn
class CatchingParent:
    """Reports how its child ended as text, rather than failing."""

    @workflow.run
    async def run(self, child_id: str, value: int) -> str:
        try:
            await workflow.execute_child_workflow(Child.run, value, False, id=child_id)
        except ChildWorkflowError as err:
            return f"{type(err.cause).__name__}:{err.cause}"
        except WorkflowAlreadyStartedError as err:
            return f"already:{err.workflow_id}"
        return "completed"


@workflow.defn
class SignallingParent:
    @workflow.run
    async def run(self, child_id: str) -> dict[str, Any]:
        handle = await workflow.start_child_workflow(Child.run, 5, True, id=child_id)
        assert handle.id == child_id and handle.first_execution_run_id
        await handle.signal(Child.proceed)
        result: dict[str, Any] = await handle
        return result


@workflow.defn
class CancellingParent:
    @workflow.run
    async def run(self, child_id: str) -> str:
        handle = await workflow.start_child_workflow(Child.run, 1, True, id=child_id)
        handle.cancel()
        try:
            await handle
        except ChildWorkflowError as err:
            return type(err.cause).__name__
        return "completed"


@workflow.defn
class LeavingParent:
    """Starts a waiting child with the given close policy, then completes at once."""

    @workflow.run
    async def run(self, child_id: str, policy: int) -> str:
        handle = await workflow.start_child_workflow(
            Child.run, 1, True, id=child_id, parent_close_policy=ParentClosePolicy(policy))
        return handle.id


@workflow.defn
class WaitingParent:
    @workflow.run
    async def run(self, child_id: str) -> Any:
        return await workflow.execute_child_workflow(Child.run, 1, True, id=child_id)


@workflow.defn
class FanOut:
    """Runs `n` children at once (ids from its own id) and sums their doubles."""

    @workflow.run
    async def run(self, n: int) -> int:
        me = workflow.info().workflow_id
        results = await asyncio.gather(*(
            workflow.execute_child_workflow(Child.run, i, False, id=f"{me}-kid-{i}")
            for i in range(n)))
        return sum(r["double"] for r in results)


@workflow.defn
class ChainChild:
    """Continues as new `left` times, then says who its parent is."""

    @workflow.run
    async def run(self, left: int) -> str:
        if left > 0:
            workflow.continue_as_new(left - 1)
        parent = workflow.info().parent
        return f"done:{None if parent is None else parent.workflow_id}"


@workflow.defn
class ChainParent:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_child_workflow(ChainChild.run, 2, id="chain-kid")
        return result


WORKFLOWS = [ChainChild, ChainParent, FanOut, WaitingParent, Child, Parent, CatchingParent,
             SignallingParent, CancellingParent, LeavingParent]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    return queue_worker(client, {"workflows": WORKFLOWS}, options)


async def test_child_in_another_shard_returns_its_result(client: Client) -> None:
    child_id = other_shard_id(client, "p-1", "c")
    async with worker(client):
        handle = await client.start_workflow(Parent.run, child_id, 21, id="p-1", task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == {"double": 42, "parent": "p-1"}
    types = await event_types(client, "p-1")
    assert [t for t in types if "Child" in t] == [
        "StartChildWorkflowExecutionInitiated",
        "ChildWorkflowExecutionStarted",
        "ChildWorkflowExecutionCompleted",
    ]
    child = await client.get_workflow_handle(child_id).describe()
    assert child.parent_id == "p-1"
    assert child.parent_run_id == handle.run_id
    assert child.status == WorkflowExecutionStatus.COMPLETED
    # Both histories replay (the Replayer reads the public form of every new event).
    await Replayer(workflows=[Parent]).replay_workflow(handle.fetch_history())
    await Replayer(workflows=[Child]).replay_workflow(
        client.get_workflow_handle(child_id).fetch_history())


async def test_child_failure_is_a_child_workflow_error_with_its_cause(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Parent.run, "c-fail", -1, id="p-2", task_queue="q")
        with anyio.fail_after(15), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    error = info.value.cause
    assert isinstance(error, ChildWorkflowError)
    assert error.workflow_id == "c-fail" and error.workflow_type == "Child"
    assert isinstance(error.cause, ApplicationError) and error.cause.type == "Negative"
    assert "ChildWorkflowExecutionFailed" in await event_types(client, "p-2")


async def test_child_id_conflict_raises_already_started_in_the_parent(client: Client) -> None:
    async with worker(client):
        await client.start_workflow(Child.run, 1, True, id="c-taken", task_queue="q")
        handle = await client.start_workflow(CatchingParent.run, "c-taken", 1, id="p-3",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == "already:c-taken"
    assert "StartChildWorkflowExecutionFailed" in await event_types(client, "p-3")


async def test_signal_a_child_through_its_handle(client: Client) -> None:
    child_id = other_shard_id(client, "p-4", "cs")
    async with worker(client):
        handle = await client.start_workflow(SignallingParent.run, child_id, id="p-4",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == {"double": 10, "parent": "p-4"}
    types = await event_types(client, "p-4")
    assert "SignalExternalWorkflowExecutionInitiated" in types
    assert "ExternalWorkflowExecutionSignaled" in types


async def test_cancel_a_child_from_the_parent(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(CancellingParent.run, "c-cancel", id="p-5",
                                             task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == "CancelledError"
        child = await client.get_workflow_handle("c-cancel").describe()
    assert child.status == WorkflowExecutionStatus.CANCELED
    assert "ChildWorkflowExecutionCanceled" in await event_types(client, "p-5")


@pytest.mark.parametrize(
    ("policy", "status"),
    [
        (ParentClosePolicy.TERMINATE, WorkflowExecutionStatus.TERMINATED),
        (ParentClosePolicy.REQUEST_CANCEL, WorkflowExecutionStatus.CANCELED),
        (ParentClosePolicy.ABANDON, WorkflowExecutionStatus.RUNNING),
    ],
)
async def test_parent_close_policy(
    client: Client, policy: ParentClosePolicy, status: WorkflowExecutionStatus
) -> None:
    child_id = other_shard_id(client, "p-6", "cp")
    async with worker(client):
        handle = await client.start_workflow(LeavingParent.run, child_id, int(policy),
                                             id="p-6", task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == child_id
        child = client.get_workflow_handle(child_id)

        async def child_settled() -> bool:
            return (await child.describe()).status == status

        await eventually(child_settled)
        if status == WorkflowExecutionStatus.RUNNING:
            await child.signal(Child.proceed)
            with anyio.fail_after(15):
                assert await child.result() == {"double": 2, "parent": "p-6"}
        elif status == WorkflowExecutionStatus.TERMINATED:
            with pytest.raises(WorkflowFailureError) as info:
                await child.result()
            assert isinstance(info.value.cause, TerminatedError)
        else:
            with pytest.raises(WorkflowFailureError) as info:
                await child.result()
            assert isinstance(info.value.cause, CancelledError)


async def test_terminated_child_is_reported_to_the_parent(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(WaitingParent.run, "c-term", id="p-7",
                                             task_queue="q")
        child = client.get_workflow_handle("c-term")

        async def child_running() -> bool:
            return "ChildWorkflowExecutionStarted" in await event_types(client, "p-7")

        await eventually(child_running)
        await child.terminate(reason="ops")
        with anyio.fail_after(15), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    error = info.value.cause
    assert isinstance(error, ChildWorkflowError)
    assert isinstance(error.cause, TerminatedError)
    assert "ChildWorkflowExecutionTerminated" in await event_types(client, "p-7")


async def test_a_dead_workers_hand_off_is_applied_exactly_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's completion wrote the start-child entry; a worker read it, applied
    it, and died before its XACK (the entry stays pending on that consumer). A live
    worker claims it once it is idle and applies it again: nothing changes twice."""
    child_id = other_shard_id(client, "p-9", "cx")

    async def no_handoffs(self: Handoffs) -> None:
        return None

    monkeypatch.setattr(Handoffs, "run", no_handoffs)
    async with worker(client):
        await client.start_workflow(Parent.run, child_id, 4, id="p-9", task_queue="q")

        async def parent_initiated() -> bool:
            return "StartChildWorkflowExecutionInitiated" in await event_types(client, "p-9")

        await eventually(parent_initiated)
    monkeypatch.undo()
    await ensure_outbox_groups(client.store)
    read = await client.store.read_group("dead-worker", outbox_streams(client.keys), 10, 0)
    assert [f[b"kind"] for _, _, f in read] == [b"start_child"]
    stream, _sid, fields = read[0]
    await client.store.call(apply_call(client.keys, fields))  # applied, never acknowledged
    assert await event_types(client, child_id) == ["WorkflowExecutionStarted"]
    async with worker(client, liveness_timeout=0.3):
        with anyio.fail_after(15):
            assert await client.get_workflow_handle("p-9").result() == {
                "double": 8, "parent": "p-9"}

        async def claimed_and_acknowledged() -> bool:
            return int((await client.redis.xpending(stream, GROUP))["pending"]) == 0

        await eventually(claimed_and_acknowledged)
    types = await event_types(client, "p-9")
    assert types.count("ChildWorkflowExecutionStarted") == 1
    assert types.count("ChildWorkflowExecutionCompleted") == 1
    assert (await event_types(client, child_id)).count("WorkflowExecutionStarted") == 1
    assert await client.redis.xlen(stream) == 0


async def test_a_child_that_continues_as_new_reports_once_at_its_end(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(ChainParent.run, id="p-11", task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == "done:p-11"
    types = await event_types(client, "p-11")
    assert types.count("ChildWorkflowExecutionStarted") == 1
    assert types.count("ChildWorkflowExecutionCompleted") == 1
    child = await client.get_workflow_handle("chain-kid").describe()
    assert child.parent_id == "p-11" and child.continued_run_id is not None


async def test_timed_out_child(client: Client) -> None:
    @workflow.defn(name="TimeoutParent")
    class TimeoutParent:
        @workflow.run
        async def run(self) -> str:
            try:
                await workflow.execute_child_workflow(
                    Child.run, 1, True, id="c-slow", execution_timeout=timedelta(seconds=0.3))
            except ChildWorkflowError as err:
                return type(err.cause).__name__
            return "completed"

    async with worker(client, workflows=[*WORKFLOWS, TimeoutParent]):
        handle = await client.start_workflow(TimeoutParent.run, id="p-10", task_queue="q")
        with anyio.fail_after(15):
            assert await handle.result() == "WorkflowTimeoutError"
    assert "ChildWorkflowExecutionTimedOut" in await event_types(client, "p-10")


async def test_children_survive_a_worker_killed_mid_flight(
    real_client: Client, redis_url: str
) -> None:
    """kill -9 of the only worker while parents start children and children report
    back (outbox entries written, read, half applied): a new worker finishes every
    parent with the right sum, and each child was started and recorded exactly once."""
    client = real_client
    prefix = client.keys.prefix
    parents = [f"fan-{n}" for n in range(8)]
    first = WorkerProcess(redis_url, prefix, "q", "tests.integration.test_child_workflows",
                          liveness=1.0).start()
    try:
        await anyio.to_thread.run_sync(first.wait_ready)
        handles = [await client.start_workflow(FanOut.run, 3, id=p, task_queue="q")
                   for p in parents]

        async def some_children_started() -> bool:
            for parent in parents:
                if "ChildWorkflowExecutionStarted" in await event_types(client, parent):
                    return True
            return False

        await eventually(some_children_started)
        first.kill()
    finally:
        first.kill()
    second = WorkerProcess(redis_url, prefix, "q", "tests.integration.test_child_workflows",
                           liveness=1.0).start()
    try:
        await anyio.to_thread.run_sync(second.wait_ready)
        with anyio.fail_after(60):
            for handle in handles:
                assert await handle.result() == 6  # 0 + 2 + 4
    finally:
        second.kill()
    for parent in parents:
        types = await event_types(client, parent)
        assert types.count("StartChildWorkflowExecutionInitiated") == 3
        assert types.count("ChildWorkflowExecutionStarted") == 3
        assert types.count("ChildWorkflowExecutionCompleted") == 3
        for i in range(3):
            assert (await event_types(client, f"{parent}-kid-{i}")).count(
                "WorkflowExecutionStarted") == 1


async def test_terminating_the_parent_terminates_its_child(client: Client) -> None:
    child_id = other_shard_id(client, "p-12", "ct")
    async with worker(client):
        await client.start_workflow(WaitingParent.run, child_id, id="p-12", task_queue="q")

        async def child_started() -> bool:
            return "ChildWorkflowExecutionStarted" in await event_types(client, "p-12")

        await eventually(child_started)
        await client.get_workflow_handle("p-12").terminate(reason="ops")
        child = client.get_workflow_handle(child_id)

        async def child_terminated() -> bool:
            return (await child.describe()).status == WorkflowExecutionStatus.TERMINATED

        await eventually(child_terminated)
    events = [e async for e in client.get_workflow_handle(child_id).fetch_history()]
    assert "parent_close_policy TERMINATE" in events[-1].attributes["reason"]


async def test_a_malformed_hand_off_entry_is_dead_lettered(client: Client) -> None:
    await ensure_outbox_groups(client.store)
    outbox = client.keys.outbox(1)
    await client.redis.xadd(outbox, {"kind": "nonsense", "target": "x", "request_id": "r"})
    await client.redis.xadd(outbox, {"kind": "signal"})  # no target
    handoffs = Handoffs(client.store, "w", liveness_ms=10**6, max_deliveries=5,
                        stopping=lambda: False)
    assert await handoffs.poll_once(block_ms=0) == 0
    letters: Any = await client.redis.xrange(client.keys.dead_letters(1))
    assert len(letters) == 2
    assert all(b"hand-off" in fields[b"reason"] for _, fields in letters)
    assert await client.redis.xlen(outbox) == 0


@workflow.defn
class SleepyChild:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(days=3))
        return "rested"


@workflow.defn
class SleepyParent:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_child_workflow(SleepyChild.run, id="sleepy-kid")
        return result


async def test_time_skipping_waits_for_hand_offs() -> None:
    """The time-skipping environment counts a hand-off not yet applied as work in
    flight (the outbox has a consumer group), so it skips the child's sleep, not the
    hand-offs around it."""
    from sdk.testing import WorkflowEnvironment

    async with await WorkflowEnvironment.start_time_skipping() as env, Worker(
        env.client, task_queue="q", workflows=[SleepyParent, SleepyChild], handle_signals=False
    ):
        with anyio.fail_after(30):
            result = await env.client.execute_workflow(SleepyParent.run, id="sleepy",
                                                       task_queue="q")
    assert result == "rested"
