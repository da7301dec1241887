"""Start options end to end, on fakeredis and a real server (the `client` fixture):
signal-with-start (atomic, retried once), id reuse and conflict policies, run and
execution timeouts (TIMED_OUT), task_timeout, memo, and the run chain's ids in
`workflow.info()`, on the handle and in describe."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine import events as ev
from engine.keys import GROUP
from engine.start_options import StartOptions
from sdk import (
    Client,
    InvalidArgumentError,
    Worker,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
    WorkflowTimeoutError,
    workflow,
)
from tests.integration.helpers import event_types, queue_worker

pytestmark = pytest.mark.anyio

Conflict = WorkflowIDConflictPolicy
Reuse = WorkflowIDReusePolicy


@workflow.defn
class Order:
    def __init__(self) -> None:
        self.picked: list[str] = []

    @workflow.signal
    def picked_up(self, by: str) -> None:
        self.picked.append(by)

    @workflow.query
    def pickers(self) -> list[str]:
        return self.picked

    @workflow.run
    async def run(self, wanted: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.picked) >= wanted)
        return self.picked


@workflow.defn
class Quick:
    @workflow.run
    async def run(self, value: int) -> int:
        return value


@workflow.defn
class Forever:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn
class InfoReport:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        info = workflow.info()
        return {
            "memo": workflow.memo(),
            "n": workflow.memo_value("n", type_hint=int),
            "missing": workflow.memo_value("missing", "default"),
            "first": info.first_execution_run_id,
            "continued": info.continued_run_id,
            "run_id": info.run_id,
            "timeouts": [None if t is None else t.total_seconds()
                         for t in (info.execution_timeout, info.run_timeout, info.task_timeout)],
        }


@workflow.defn
class Chain:
    """Continues as new `left` times, recording each run's chain ids, then returns them
    with the memo the last run still has."""

    @workflow.run
    async def run(self, left: int, seen: list[list[Any]]) -> dict[str, Any]:
        info = workflow.info()
        seen = [*seen, [info.run_id, info.first_execution_run_id, info.continued_run_id,
                        None if info.run_timeout is None else info.run_timeout.total_seconds()]]
        if left > 0:
            workflow.continue_as_new(left - 1, seen)
        return {"seen": seen, "memo": workflow.memo()}


@workflow.defn
class SleepyChain:
    """Continues as new for ever, each run sleeping a little: only an execution
    timeout (which the chain shares) ends it."""

    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(0.05)
        workflow.continue_as_new()


WORKFLOWS = [Order, Quick, Forever, InfoReport, Chain, SleepyChain]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    return queue_worker(client, {"workflows": WORKFLOWS}, options)


# --- signal-with-start ------------------------------------------------------------------


async def test_signal_with_start_starts_then_signals(client: Client) -> None:
    handle = await client.start_workflow(Order.run, 1, id="o-1", task_queue="q",
                                         start_signal=Order.picked_up, start_signal_args=["ann"])
    assert handle.first_execution_run_id == handle.run_id
    # The signal is in the history before the first workflow task: it sees it at once.
    assert await event_types(client, "o-1") == ["WorkflowExecutionStarted",
                                           "WorkflowExecutionSignaled"]
    async with worker(client):
        with anyio.fail_after(10):
            assert await handle.result() == ["ann"]


async def test_signal_with_start_signals_the_running_run(client: Client) -> None:
    async with worker(client):
        first = await client.start_workflow(Order.run, 2, id="o-2", task_queue="q")
        again = await client.start_workflow(Order.run, 2, id="o-2", task_queue="q",
                                            start_signal="picked_up", start_signal_args=["bob"])
        assert again.run_id == first.run_id
        third = await client.start_workflow(Order.run, 2, id="o-2", task_queue="q",
                                            start_signal="picked_up", start_signal_args=["cy"])
        assert third.run_id == first.run_id
        with anyio.fail_after(10):
            assert await first.result() == ["bob", "cy"]


async def test_signal_with_start_retried_is_applied_once(client: Client) -> None:
    """A signal-with-start whose reply was lost is retried with the same run id (its
    request id): the retry answers as the first call did and delivers nothing again,
    both when it started the run and when it signalled a running one."""
    store = client.store
    opts = StartOptions(start_signal="picked_up")
    signal = client.codec.encode(["ann"])
    payload = client.codec.encode([3])
    for _ in range(2):
        assert await store.start("o-3", "run-a", "Order", "q", payload, opts,
                                 signal_payload=signal) == "run-a"
    for _ in range(2):
        assert await store.start("o-3", "run-b", "Order", "q", payload, opts,
                                 signal_payload=signal) == "run-a"
    assert await event_types(client, "o-3") == ["WorkflowExecutionStarted",
                                           "WorkflowExecutionSignaled",
                                           "WorkflowExecutionSignaled"]


async def test_signal_with_start_bad_input_fails_at_the_call(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="FAIL"):
        await client.start_workflow(Order.run, 1, id="o-4", task_queue="q",
                                    start_signal="picked_up", id_conflict_policy=Conflict.FAIL)
    with pytest.raises(InvalidArgumentError, match="start_signal"):
        await client.start_workflow(Order.run, 1, id="o-4", task_queue="q",
                                    start_signal_args=["x"])
    assert await client.store.get_state("o-4") == {}


# --- id reuse and conflict policies -----------------------------------------------------


async def test_conflict_policies(client: Client) -> None:
    first = await client.start_workflow(Forever.run, id="c-1", task_queue="q")
    with pytest.raises(WorkflowAlreadyStartedError):
        await client.start_workflow(Forever.run, id="c-1", task_queue="q")
    with pytest.raises(WorkflowAlreadyStartedError):
        await client.start_workflow(Forever.run, id="c-1", task_queue="q",
                                    id_conflict_policy=Conflict.FAIL)
    kept = await client.start_workflow(Forever.run, id="c-1", task_queue="q",
                                       id_conflict_policy=Conflict.USE_EXISTING)
    assert kept.run_id == first.run_id
    assert kept.first_execution_run_id == first.run_id
    replaced = await client.start_workflow(Forever.run, id="c-1", task_queue="q",
                                           id_conflict_policy=Conflict.TERMINATE_EXISTING)
    assert replaced.run_id != first.run_id
    desc = await replaced.describe()
    assert (desc.status, desc.run_id) == ("RUNNING", replaced.run_id)
    # The old run's end was announced (result() waiters woke) before the new run began.
    assert await event_types(client, "c-1") == ["WorkflowExecutionStarted"]
    again = await client.start_workflow(Forever.run, id="c-1", task_queue="q",
                                        id_reuse_policy=Reuse.TERMINATE_IF_RUNNING)
    assert again.run_id not in (first.run_id, replaced.run_id)
    assert (await again.describe()).run_id == again.run_id


async def test_reuse_policies(client: Client) -> None:
    async with worker(client):
        done = await client.start_workflow(Quick.run, 1, id="r-1", task_queue="q")
        with anyio.fail_after(10):
            await done.result()
        for policy in (Reuse.REJECT_DUPLICATE, Reuse.ALLOW_DUPLICATE_FAILED_ONLY):
            with pytest.raises(WorkflowAlreadyStartedError):
                await client.start_workflow(Quick.run, 2, id="r-1", task_queue="q",
                                            id_reuse_policy=policy)
        second = await client.start_workflow(Quick.run, 2, id="r-1", task_queue="q",
                                             id_reuse_policy=Reuse.ALLOW_DUPLICATE)
        with anyio.fail_after(10):
            assert await second.result() == 2

        forever = await client.start_workflow(Forever.run, id="r-2", task_queue="q")
        await forever.terminate(reason="stop")
        with pytest.raises(WorkflowAlreadyStartedError):
            await client.start_workflow(Quick.run, 3, id="r-2", task_queue="q",
                                        id_reuse_policy=Reuse.REJECT_DUPLICATE)
        failed_only = await client.start_workflow(
            Quick.run, 3, id="r-2", task_queue="q",
            id_reuse_policy=Reuse.ALLOW_DUPLICATE_FAILED_ONLY)
        with anyio.fail_after(10):
            assert await failed_only.result() == 3


async def test_policies_bad_input(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="id_reuse_policy"):
        await client.start_workflow(Quick.run, 1, id="b-1", task_queue="q",
                                    id_reuse_policy="REJECT_DUPLICATE")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="id_conflict_policy"):
        await client.start_workflow(Quick.run, 1, id="b-1", task_queue="q",
                                    id_conflict_policy="FAIL")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="TERMINATE_EXISTING alone"):
        await client.start_workflow(Quick.run, 1, id="b-1", task_queue="q",
                                    id_reuse_policy=Reuse.TERMINATE_IF_RUNNING,
                                    id_conflict_policy=Conflict.USE_EXISTING)
    for bad in (-1, 0, float("nan"), "5"):
        with pytest.raises(InvalidArgumentError, match="run_timeout"):
            await client.start_workflow(Quick.run, 1, id="b-1", task_queue="q",
                                        run_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="memo keys"):
        await client.start_workflow(Quick.run, 1, id="b-1", task_queue="q",
                                    memo={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="args="):
        await client.start_workflow(Quick.run, 1, id="b-1", task_queue="q", args=[1])
    assert await client.store.get_state("b-1") == {}


# --- timeouts ---------------------------------------------------------------------------


async def test_run_timeout_ends_the_run_timed_out(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Forever.run, id="t-1", task_queue="q",
                                             run_timeout=timedelta(milliseconds=300))
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, WorkflowTimeoutError)
    assert cause.timeout_type == "run"
    desc = await handle.describe()
    assert desc.status == "TIMED_OUT"
    assert desc.run_timeout == timedelta(milliseconds=300)
    assert (await event_types(client, "t-1"))[-1] == "WorkflowExecutionTimedOut"
    # Nothing of the run is left in the shard's timers.
    assert await client.redis.zrange(client.keys.timers(client.keys.shard("t-1")), 0, -1) == []


async def test_a_run_that_closes_in_time_leaves_no_timeout_timer(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Quick.run, 5, id="t-2", task_queue="q",
                                             execution_timeout=3600, run_timeout=3600)
        with anyio.fail_after(10):
            assert await handle.result() == 5
    assert await client.redis.zrange(client.keys.timers(client.keys.shard("t-2")), 0, -1) == []
    desc = await handle.describe()
    assert (desc.status, desc.execution_timeout) == ("COMPLETED", timedelta(hours=1))


async def test_execution_timeout_spans_continue_as_new(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(SleepyChain.run, id="t-3", task_queue="q",
                                             execution_timeout=0.5)
        with anyio.fail_after(15), pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, WorkflowTimeoutError)
    assert cause.timeout_type == "execution"
    desc = await handle.describe()
    assert desc.status == "TIMED_OUT"
    # It ran more than one run: the deadline went with the chain.
    assert desc.run_id != handle.run_id
    assert desc.first_execution_run_id == handle.run_id


async def test_task_timeout_sets_the_workflow_task_deadline(client: Client) -> None:
    """The run's task_timeout, not the worker's, decides when a started workflow task
    is given up (its 'W' timer)."""
    handle = await client.start_workflow(Forever.run, id="t-4", task_queue="q",
                                         task_timeout=timedelta(seconds=2))
    assert handle.run_id
    keys = client.keys
    shard = keys.shard("t-4")
    stream = keys.workflow_tasks(shard, "q")
    await client.store.ensure_groups("q")
    reply: Any = await client.redis.xreadgroup(GROUP, "w", {stream: ">"}, count=1)
    msg_id, fields = reply[0][1][0]
    before = time.time() * 1000
    call = client.store.wft_start_call("t-4", handle.run_id, fields[b"epoch"].decode(),
                                       msg_id.decode(), stream, None, 600_000)
    assert client.store.parse_wft_start(await client.store.call(call)) is not None
    timers: Any = await client.redis.zrange(keys.timers(shard), 0, -1, withscores=True)
    deadlines = [score for member, score in timers if member.startswith(b"W|")]
    assert len(deadlines) == 1
    # Two seconds from the start, far from the worker's ten minutes.
    assert before + 1_000 < deadlines[0] < before + 60_000


# --- memo and run info ------------------------------------------------------------------


async def test_memo_and_info(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            InfoReport.run, id="m-1", task_queue="q", memo={"k": "v", "n": 3},
            execution_timeout=timedelta(hours=2), run_timeout=timedelta(hours=1),
            task_timeout=timedelta(seconds=20), args=[])
        with anyio.fail_after(10):
            report = await handle.result()
    assert report == {
        "memo": {"k": "v", "n": 3}, "n": 3, "missing": "default",
        "first": handle.run_id, "continued": None, "run_id": handle.run_id,
        "timeouts": [7200.0, 3600.0, 20.0],
    }
    desc = await handle.describe()
    assert desc.memo == {"k": "v", "n": 3}
    assert desc.first_execution_run_id == handle.run_id
    assert desc.continued_run_id is None
    assert (desc.execution_timeout, desc.run_timeout, desc.task_timeout) == (
        timedelta(hours=2), timedelta(hours=1), timedelta(seconds=20))
    started = (await handle.fetch_history()).events[0]
    assert started.attributes["memo"] == {"k": "v", "n": 3}


async def test_run_chain_ids_and_memo_across_continue_as_new(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Chain.run, 2, [], id="m-2", task_queue="q",
                                             memo={"tenant": "t1"}, run_timeout=60)
        with anyio.fail_after(10):
            result = await handle.result()
    seen = result["seen"]
    runs = [s[0] for s in seen]
    assert runs[0] == handle.run_id
    assert [s[1] for s in seen] == [handle.run_id] * 3
    assert [s[2] for s in seen] == [None, runs[0], runs[1]]
    assert [s[3] for s in seen] == [60.0] * 3
    assert result["memo"] == {"tenant": "t1"}
    desc = await handle.describe()
    assert (desc.run_id, desc.continued_run_id) == (runs[2], runs[1])
    assert desc.memo == {"tenant": "t1"}


async def test_no_memo_and_old_histories(client: Client) -> None:
    """A run started without options (and a history written before they existed) has
    an empty memo, no timeouts, and is its own first run."""
    event = ev.WorkflowExecutionStarted(event_id=1, timestamp=0, workflow_type="X",
                                        task_queue="q", input=b"", run_id="r")
    assert event.first_execution_run_id == "" and event.memo == b""
    async with worker(client):
        handle = await client.start_workflow(Quick.run, 4, id="m-3", task_queue="q")
        with anyio.fail_after(10):
            assert await handle.result() == 4
    desc = await handle.describe()
    assert desc.memo == {}
    assert (desc.execution_timeout, desc.run_timeout, desc.task_timeout) == (None, None, None)
    assert desc.first_execution_run_id == handle.run_id
