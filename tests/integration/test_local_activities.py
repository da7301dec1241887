"""Local activities (`workflow.execute_local_activity`) on fakeredis and on a real server
(the `client` fixture): run inside the workflow task, recorded as markers, retried in
the worker, failing as remote activities do, and replayed from the markers."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import (
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    Client,
    NondeterminismError,
    RetryPolicy,
    Worker,
    activity,
    workflow,
)
from sdk.testing import Replayer
from tests.integration.helpers import queue_worker

pytestmark = pytest.mark.anyio

T = timedelta(seconds=10)
FAST = RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=5)
#: Calls of each local activity, by workflow id.
CALLS: dict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


@activity.defn
def greet(name: str) -> dict[str, Any]:
    info = activity.info()
    CALLS[info.workflow_id]["greet"] += 1
    return {"greeting": f"hello {name}", "local": info.is_local,
            "thread": threading.current_thread().name}


@activity.defn
async def flaky(fail_times: int) -> str:
    info = activity.info()
    CALLS[info.workflow_id]["flaky"] += 1
    if info.attempt <= fail_times:
        raise ApplicationError(f"attempt {info.attempt} fails", type="Flaky")
    return f"ok on attempt {info.attempt}"


@activity.defn
async def slow() -> str:
    CALLS[activity.info().workflow_id]["slow"] += 1
    await anyio.sleep(30)
    return "never"


@activity.defn
async def outlasts_the_task() -> str:
    """Longer than the worker's workflow task timeout in the test below."""
    CALLS[activity.info().workflow_id]["outlasts"] += 1
    await anyio.sleep(1.5)
    return "done"


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Greets:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, name: str) -> list[Any]:
        first = await workflow.execute_local_activity(greet, name, start_to_close_timeout=T)
        await workflow.wait_condition(lambda: self.go)
        second = await workflow.execute_local_activity(greet, "again", start_to_close_timeout=T)
        return [first, second]


@workflow.defn(name="Greets")
class GreetsChanged:
    @workflow.signal
    def proceed(self) -> None:
        pass

    @workflow.run
    async def run(self, name: str) -> list[Any]:
        return [await workflow.execute_local_activity(shout, name, start_to_close_timeout=T)]


@workflow.defn
class Retries:
    @workflow.run
    async def run(self, fail_times: int, max_attempts: int) -> Any:
        policy = RetryPolicy(initial_interval=timedelta(milliseconds=10),
                             maximum_attempts=max_attempts)
        try:
            return await workflow.execute_local_activity(
                flaky, fail_times, start_to_close_timeout=T, retry_policy=policy)
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            return {"error": type(err).__name__, "attempt": err.attempt,
                    "cause": err.cause.message, "type": err.cause.type}


@workflow.defn
class TimesOut:
    @workflow.run
    async def run(self) -> Any:
        try:
            await workflow.execute_local_activity(
                slow, start_to_close_timeout=timedelta(milliseconds=100),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10),
                                         maximum_attempts=2))
        except ActivityError as err:
            assert isinstance(err.cause, ActivityTimeoutError)
            return [err.attempt, err.cause.timeout_type]
        return "not timed out"


@workflow.defn
class Long:
    @workflow.run
    async def run(self) -> str:
        return str(await workflow.execute_local_activity(outlasts_the_task,
                                                         start_to_close_timeout=T))


WORKFLOWS = [Greets, Retries, TimesOut, Long]
ACTIVITIES = [greet, flaky, slow, shout, outlasts_the_task]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    defaults = {"workflows": WORKFLOWS, "activities": ACTIVITIES, "graceful_shutdown_timeout": 0.5}
    return queue_worker(client, defaults, options)


async def markers(client: Client, wid: str) -> list[dict[str, Any]]:
    history = [e async for e in client.get_workflow_handle(wid).fetch_history()]
    assert not [e for e in history if e.type.startswith("ActivityTask")]  # no round trip
    return [e.attributes for e in history if e.type == "MarkerRecorded"]


async def test_result_recorded_as_a_marker_and_replayed_without_running_again(
    client: Client,
) -> None:
    async with worker(client):
        handle = await client.start_workflow(Greets.run, "ada", id="la-1", task_queue="q")
        with anyio.fail_after(10):
            while not [e async for e in handle.fetch_history() if e.type == "MarkerRecorded"]:
                await anyio.sleep(0.01)
    # A new worker with an empty cache replays the first activation from its marker,
    # then runs the second local activity only.
    async with worker(client):
        await handle.signal(Greets.proceed)
        with anyio.fail_after(20):
            first, second = await handle.result()
    assert first["greeting"] == "hello ada" and first["local"] is True
    assert first["thread"].startswith("redurable-activity")
    assert second["greeting"] == "hello again"
    assert CALLS["la-1"]["greet"] == 2
    recorded = await markers(client, "la-1")
    assert [(m["marker_name"], m["activity_id"], m["activity_type"], m["attempt"])
            for m in recorded] == [("core_local_activity", 1, "greet", 1),
                                   ("core_local_activity", 2, "greet", 1)]
    assert recorded[0]["result"]["greeting"] == "hello ada"
    # The Replayer reads the whole run from history: no call at all.
    await Replayer(workflows=[Greets]).replay_workflow(handle.fetch_history())
    assert CALLS["la-1"]["greet"] == 2


async def test_changing_the_local_activity_is_non_determinism(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Greets.run, "bo", id="la-nd", task_queue="q")
        await handle.signal(Greets.proceed)
        with anyio.fail_after(20):
            await handle.result()
    with pytest.raises(NondeterminismError, match="'greet' but workflow code asked for 'shout'"):
        await Replayer(workflows=[GreetsChanged]).replay_workflow(handle.fetch_history())


async def test_retried_locally_with_attempts_in_the_marker(client: Client) -> None:
    async with worker(client):
        with anyio.fail_after(20):
            out = await client.execute_workflow(Retries.run, 2, 5, id="la-retry",
                                                task_queue="q")
    assert out == "ok on attempt 3"
    assert CALLS["la-retry"]["flaky"] == 3
    (marker,) = await markers(client, "la-retry")
    assert marker["attempt"] == 3 and marker["result"] == "ok on attempt 3"


async def test_fails_with_activity_error_when_the_retry_policy_gives_up(
    client: Client,
) -> None:
    async with worker(client):
        with anyio.fail_after(20):
            out = await client.execute_workflow(Retries.run, 10, 2, id="la-fail",
                                                task_queue="q")
    assert out == {"error": "ActivityError", "attempt": 2, "cause": "attempt 2 fails",
                   "type": "Flaky"}
    assert CALLS["la-fail"]["flaky"] == 2
    (marker,) = await markers(client, "la-fail")
    assert marker["attempt"] == 2 and marker["failure"]["type"] == "Flaky"


async def test_start_to_close_timeout_is_retried_then_fails(client: Client) -> None:
    async with worker(client):
        with anyio.fail_after(20):
            out = await client.execute_workflow(TimesOut.run, id="la-slow", task_queue="q")
    assert out == [2, "start_to_close"]
    assert CALLS["la-slow"]["slow"] == 2


async def test_an_unregistered_local_activity_fails_at_once(client: Client) -> None:
    async with worker(client, activities=[greet]):
        with anyio.fail_after(20):
            out = await client.execute_workflow(Retries.run, 0, 5, id="la-unreg",
                                                task_queue="q")
    assert out["attempt"] == 1 and out["type"] == "ActivityNotRegistered"


async def test_a_local_activity_longer_than_the_task_timeout_runs_once(client: Client) -> None:
    # The worker moves the task's deadline while the local activity runs; before, the
    # task timed out at 0.5 s, was retried, and ran the activity again, for ever.
    async with worker(client, workflow_task_timeout=0.5):
        with anyio.fail_after(20):
            out = await client.execute_workflow(Long.run, id="la-long", task_queue="q")
    assert out == "done"
    assert CALLS["la-long"]["outlasts"] == 1
    history = [e.type async for e in client.get_workflow_handle("la-long").fetch_history()]
    assert history == ["WorkflowExecutionStarted", "WorkflowTaskCompleted", "MarkerRecorded",
                       "WorkflowExecutionCompleted"]


async def test_a_worker_without_remote_activities_runs_local_ones(client: Client) -> None:
    async with worker(client, no_remote_activities=True):
        with anyio.fail_after(20):
            out = await client.execute_workflow(Retries.run, 1, 5, id="la-noremote",
                                                task_queue="q")
    assert out == "ok on attempt 2"
