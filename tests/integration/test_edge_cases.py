"""Edge cases around the core features, on fakeredis and on a real server: user errors
in activities, signal handlers and workflow code, activity cancellation from workflow
code, and ids that look like the keys of other workflows."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import (
    ActivityError,
    ApplicationError,
    Client,
    InvalidArgumentError,
    RetryPolicy,
    Worker,
    WorkflowFailureError,
    activity,
    workflow,
)
from tests.integration.helpers import eventually, queue_worker

pytestmark = pytest.mark.anyio

T = timedelta(seconds=10)
EVENTS: list[str] = []


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
    EVENTS.clear()


@activity.defn
async def bad_heartbeat() -> str:
    activity.heartbeat(object())  # not encodable
    await anyio.sleep(0.3)
    return "finished"


@activity.defn
async def long_running(seconds: float) -> str:
    EVENTS.append("started")
    try:
        # Told on a heartbeat that the workflow no longer wants it, the attempt is
        # cancelled (anyio cancellation) and is_cancelled() is true.
        with anyio.move_on_after(seconds):
            while True:
                activity.heartbeat()
                await anyio.sleep(0.02)
    finally:
        EVENTS.append("cancelled" if activity.is_cancelled() else "ran out")
    return "done"


@activity.defn
async def echo(value: Any) -> Any:
    return value


@activity.defn
async def awaits_cancelled_task() -> str:
    inner = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    inner.cancel()
    await inner  # raises asyncio.CancelledError here, in the activity's own code
    return "unreachable"


@workflow.defn
class CallOne:
    @workflow.run
    async def run(self, name: str, *args: Any) -> Any:
        return await workflow.execute_activity(
            name,
            *args,
            start_to_close_timeout=T,
            heartbeat_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


@workflow.defn
class RaceActivityAgainstTimer:
    """Starts an activity and gives up on it after a while: the activity is cancelled."""

    @workflow.run
    async def run(self) -> str:
        future = workflow.start_activity(long_running, 30.0, start_to_close_timeout=T)
        done, _ = await asyncio.wait([future], timeout=0.3)
        if done:
            return "activity won"
        future.cancel()
        await workflow.sleep(0.5)  # time for the attempt to learn it was cancelled
        return "gave up"


@workflow.defn
class SignalErrors:
    def __init__(self) -> None:
        self.done = False

    @workflow.signal
    async def fail_workflow(self) -> None:
        raise ApplicationError("signal says no", type="SignalRefused")

    @workflow.signal
    def buggy(self) -> None:
        raise KeyError("bug in a signal handler")

    @workflow.signal
    def refuse(self) -> None:
        raise ApplicationError("sync signal says no", type="SignalRefused")

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)


@workflow.defn(name="Deploy")
class DeployBuggy:
    @workflow.run
    async def run(self, x: int) -> int:
        return x // 0  # a bug: fails the workflow task, not the workflow


@workflow.defn(name="Deploy")
class DeployFixed:
    @workflow.run
    async def run(self, x: int) -> int:
        return x * 2


@workflow.defn
class BadResult:
    @workflow.run
    async def run(self) -> Any:
        return object()


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds)
        return workflow.info().workflow_id


WORKFLOWS = [CallOne, RaceActivityAgainstTimer, SignalErrors, BadResult, Sleeper]
ACTIVITIES = [bad_heartbeat, long_running, echo, awaits_cancelled_task]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    return queue_worker(client, {"workflows": WORKFLOWS, "activities": ACTIVITIES}, options)


async def test_unencodable_heartbeat_details_do_not_kill_the_worker(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            CallOne.run, "bad_heartbeat", id="hb-bad", task_queue="q"
        )
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        # The activity's own heartbeat() call raised: its attempt failed, nothing else.
        activity_error = info.value.cause
        assert isinstance(activity_error, ActivityError)
        cause = activity_error.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "PayloadError"
        assert "cannot be encoded" in str(cause)
        # The worker is still serving.
        with anyio.fail_after(10):
            assert (
                await client.execute_workflow(CallOne.run, "echo", 5, id="hb-after", task_queue="q")
                == 5
            )


async def test_workflow_cancels_an_activity(client: Client) -> None:
    async with worker(client):
        with anyio.fail_after(10):
            result = await client.execute_workflow(
                RaceActivityAgainstTimer.run, id="act-cancel", task_queue="q"
            )
    assert result == "gave up"
    assert EVENTS == ["started", "cancelled"]


@pytest.mark.parametrize("signal", ["fail_workflow", "refuse"])
async def test_signal_handler_failure_error_fails_the_workflow(client: Client, signal: str) -> None:
    """An ApplicationError from a signal handler, async or sync, fails the workflow."""
    async with worker(client):
        handle = await client.start_workflow(SignalErrors.run, id="sig-fail", task_queue="q")
        await handle.signal(signal)
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == "SignalRefused"
        assert (await handle.describe()).status == "FAILED"


async def test_signal_handler_bug_fails_the_task(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(SignalErrors.run, id="sig-bug", task_queue="q")
        await handle.signal(SignalErrors.buggy)

        async def task_failed() -> bool:
            return (await handle.describe()).last_workflow_task_failure is not None

        await eventually(task_failed)
        desc = await handle.describe()
        assert desc.status == "RUNNING"
        assert desc.last_workflow_task_failure is not None
        assert "buggy" in desc.last_workflow_task_failure["message"]
        assert "KeyError" in desc.last_workflow_task_failure.get("stack", "")


async def test_workflow_bug_retried_until_fixed(client: Client) -> None:
    async with worker(client, workflows=[DeployBuggy]):
        handle = await client.start_workflow("Deploy", 21, id="deploy-1", task_queue="q")

        async def failing() -> bool:
            desc = await handle.describe()
            return desc.workflow_task_attempt >= 2

        await eventually(failing)
        desc = await handle.describe()
        assert desc.last_workflow_task_failure is not None
        assert "ZeroDivisionError" in desc.last_workflow_task_failure["message"]
    types = [e.type async for e in handle.fetch_history()]
    assert types == ["WorkflowExecutionStarted"]  # failed tasks write no events
    async with worker(client, workflows=[DeployFixed]):
        with anyio.fail_after(10):
            assert await handle.result() == 42


async def test_unencodable_workflow_result_fails_the_workflow(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(BadResult.run, id="bad-result", task_queue="q")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert "cannot be encoded" in str(info.value.cause)


def _colliding_pair(client: Client, suffix: str) -> tuple[str, str]:
    """Two ids in one shard where the second is the first plus a key suffix."""
    for i in range(10_000):
        base = f"w{i}"
        if client.keys.shard(base) == client.keys.shard(base + suffix):
            return base, base + suffix
    raise AssertionError("no colliding pair found")


@pytest.mark.parametrize("suffix", [":history", ":buffer"])
async def test_ids_that_name_another_workflows_keys(client: Client, suffix: str) -> None:
    """An id equal to another workflow's id plus ':history' would make its state hash
    the same key as that workflow's history stream: such ids are refused."""
    base, other = _colliding_pair(client, suffix)
    assert client.keys.workflow(other) in (client.keys.history(base), client.keys.buffer(base))
    with pytest.raises(InvalidArgumentError, match="reserved"):
        await client.start_workflow(Sleeper.run, 0.01, id=other, task_queue="q")
    async with worker(client):
        with anyio.fail_after(10):
            result = await client.execute_workflow(Sleeper.run, 0.01, id=base, task_queue="q")
    assert result == base


async def test_ids_with_separators_work(client: Client) -> None:
    """'|' separates the fields of timer members and ':' the parts of keys: both are
    fine inside an id."""
    async with worker(client):
        for wid in ("a|b|c|d|e", "order:3", "x:history:y", "ünïcödé-✓"):
            with anyio.fail_after(10):
                assert (
                    await client.execute_workflow(Sleeper.run, 0.05, id=wid, task_queue="q") == wid
                )


async def test_activity_raising_cancelled_error_is_an_ordinary_failure(client: Client) -> None:
    """asyncio.CancelledError from the activity's own code fails the attempt like any
    error (it used to end the attempt silently, leaving its task in flight for ever)."""
    async with worker(client):
        handle = await client.start_workflow(
            CallOne.run, "awaits_cancelled_task", id="act-own-cancel", task_queue="q"
        )
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    activity_error = info.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, ApplicationError)
    assert activity_error.cause.type == "CancelledError"


@workflow.defn
class SlowLastStep:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: "go" in self.items)
        if not workflow.is_replaying():
            time.sleep(0.6)  # noqa: ASYNC251  (a slow activation: a signal lands meanwhile)
        return self.items


def _signal_from_another_thread(url: str, prefix: str, workflow_id: str, delay: float) -> None:
    async def send() -> None:
        await anyio.sleep(delay)
        other = await Client.connect(url, prefix=prefix)
        try:
            await other.get_workflow_handle(workflow_id).signal("add", "late")
        finally:
            await other.close()

    asyncio.run(send())


async def test_close_dropped_when_a_signal_arrives_during_the_last_task(
    real_client: Client, redis_url: str
) -> None:
    """The completion that would close the run is not applied while a signal waits in
    the buffer: the signal is appended and the code decides again, having seen it."""
    client = real_client
    async with worker(client, workflows=[SlowLastStep]):
        handle = await client.start_workflow(SlowLastStep.run, id="dropped", task_queue="q")
        # The worker's loop is blocked during the slow activation, and so is this
        # client: the late signal comes from a thread with its own client.
        sender = threading.Thread(
            target=_signal_from_another_thread,
            args=(redis_url, client.keys.prefix, "dropped", 0.25),
        )
        await handle.signal("add", "go")
        sender.start()
        with anyio.fail_after(10):
            result = await handle.result()
        sender.join()
    assert result == ["go", "late"]
    types = [e.type async for e in handle.fetch_history()]
    # WorkflowTaskCompleted without the close, the signal, then the real close.
    assert types[-4:] == [
        "WorkflowTaskCompleted",
        "WorkflowExecutionSignaled",
        "WorkflowTaskCompleted",
        "WorkflowExecutionCompleted",
    ]


@workflow.defn
class Clock:
    def __init__(self) -> None:
        self.times: list[str] = []

    @workflow.query
    def seen(self) -> list[str]:
        return self.times

    @workflow.run
    async def run(self) -> list[str]:
        self.times.append(workflow.now().isoformat())
        await workflow.execute_activity(echo, 1, start_to_close_timeout=T)
        self.times.append(workflow.now().isoformat())
        return self.times


async def test_server_clock_stepping_back_replays_the_same_time(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workflow.now() never goes back within a run; the time recorded for an activation
    must be the one its code saw, or a replay sees another time (the worker recorded the
    server's time even when the machine had kept a later one)."""
    parse = client.store.parse_wft_start
    starts = 0

    def clock_steps_back(reply: Any) -> Any:
        nonlocal starts
        started = parse(reply)
        if started is not None:
            starts += 1
            if starts > 1:  # a failover to a server whose clock is a minute behind
                started = dataclasses.replace(started, now_ms=started.now_ms - 60_000)
        return started

    monkeypatch.setattr(client.store, "parse_wft_start", clock_steps_back)
    async with worker(client, workflows=[Clock]) as w:
        # Every task starts (no speculation, no one-write activity step).
        monkeypatch.setattr(w._workflow_tasks.activations, "speculate", lambda task: None)
        monkeypatch.setattr(w._workflow_tasks.activations, "one_write", lambda *a: None)
        with anyio.fail_after(10):
            live = await client.execute_workflow(Clock.run, id="clock", task_queue="q")
    assert starts >= 2
    assert live[0] == live[1]  # the machine kept time from going back
    async with worker(client, workflows=[Clock], max_cached_workflows=0):
        replayed = await client.get_workflow_handle("clock").query(Clock.seen)
    assert replayed == live


@workflow.defn
class ActivityOnBadQueue:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(echo, 1, task_queue="bad{queue}", start_to_close_timeout=T)


async def test_reserved_and_bad_task_queue_names(client: Client) -> None:
    """The workers zset of queue "jobs:info" would be the worker-info hash of queue
    "jobs": such names are refused, and so are bad queue names from workflow code."""
    assert client.keys.workers("jobs:info") == client.keys.worker_info("jobs")
    with pytest.raises(InvalidArgumentError, match="reserved"):
        Worker(client, task_queue="jobs:info", workflows=WORKFLOWS)
    with pytest.raises(InvalidArgumentError, match="reserved"):
        await client.start_workflow(Sleeper.run, 0.01, id="x", task_queue="jobs:info")
    async with worker(client, workflows=[ActivityOnBadQueue]):
        handle = await client.start_workflow(ActivityOnBadQueue.run, id="bad-q", task_queue="q")

        async def failed() -> bool:
            return (await handle.describe()).last_workflow_task_failure is not None

        await eventually(failed)
    failure = (await handle.describe()).last_workflow_task_failure
    assert failure is not None
    assert "forbidden character" in failure["message"]
    assert [e.type async for e in handle.fetch_history()] == ["WorkflowExecutionStarted"]
