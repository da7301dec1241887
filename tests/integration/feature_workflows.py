"""What the core feature tests (tests/integration/test_features_*.py) share: the
activities and workflows they run, the records the activities keep, and the worker
and activity-call helpers."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import (
    ActivityCancellationType,
    ActivityError,
    ApplicationError,
    CancelledError,
    Client,
    RetryPolicy,
    Worker,
    WorkflowHandle,
    activity,
    workflow,
)
from sdk.examples import order
from tests.integration.helpers import queue_worker

T = timedelta(seconds=10)
#: (attempt, monotonic time, heartbeat details) of every activity call, by workflow id.
CALLS: dict[str, list[tuple[int, float, Any]]] = defaultdict(list)
CLEANUPS: list[str] = []


@pytest.fixture(autouse=True)
def fresh_records() -> None:
    """Autouse in each test module that imports it: no test sees another's records."""
    CALLS.clear()
    CLEANUPS.clear()


def _record() -> activity.ActivityInfo:
    info = activity.info()
    CALLS[info.workflow_id].append((info.attempt, time.monotonic(), info.heartbeat_details))
    return info


# --- activities -------------------------------------------------------------------------


@activity.defn
async def flaky(fail_times: int, error_type: str | None = None, non_retryable: bool = False) -> int:
    info = _record()
    if info.attempt <= fail_times:
        raise ApplicationError(
            f"boom #{info.attempt}", type=error_type, non_retryable=non_retryable
        )
    return info.attempt


@activity.defn
async def raise_value_error() -> None:
    _record()
    raise ValueError("not a good value")


@activity.defn
async def sleeper(seconds: float) -> str:
    """Sleeps, heartbeating, so it learns at once when its attempt is no longer wanted."""
    _record()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await anyio.sleep(0.05)
        activity.heartbeat()
    return "slept"


@activity.defn
async def checkpointed() -> Any:
    """Attempt 1 heartbeats a checkpoint then hangs (stops heartbeating); the next
    attempt returns the checkpoint it was given."""
    info = _record()
    if info.attempt == 1:
        activity.heartbeat("checkpoint", 7)
        await anyio.sleep(5)
        return "attempt 1 must not win"
    return info.heartbeat_details


@activity.defn
async def echo(value: Any) -> Any:
    _record()
    return value


@activity.defn
async def cleanup(reason: str) -> None:
    CLEANUPS.append(reason)


ACTIVITIES = [flaky, raise_value_error, sleeper, checkpointed, echo, cleanup]


# --- workflows --------------------------------------------------------------------------


def _timeout(opts: dict[str, Any], key: str) -> timedelta | None:
    return timedelta(milliseconds=opts[key]) if key in opts else None


@workflow.defn
class CallActivity:
    """Runs one activity with the given options and reports how it ended, as the
    workflow code sees it."""

    @workflow.run
    async def run(self, name: str, args: list[Any], opts: dict[str, Any]) -> dict[str, Any]:
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=opts.get("initial_ms", 50)),
            backoff_coefficient=opts.get("backoff", 2.0),
            maximum_interval=_timeout(opts, "max_interval_ms"),
            maximum_attempts=opts.get("max_attempts", 0),
            non_retryable_error_types=opts.get("non_retryable", ()),
        )
        try:
            result = await workflow.execute_activity(
                name,
                *args,
                start_to_close_timeout=_timeout(opts, "start_to_close_ms"),
                schedule_to_close_timeout=_timeout(opts, "schedule_to_close_ms"),
                heartbeat_timeout=_timeout(opts, "heartbeat_ms"),
                retry_policy=policy,
            )
        except ActivityError as exc:
            cause = exc.cause
            return {
                "error": type(exc).__name__,
                "attempt": exc.attempt,
                "cause": type(cause).__name__,
                "message": str(cause),
                "error_type": getattr(cause, "type", None),
                "timeout_type": getattr(cause, "timeout_type", None),
            }
        return {"result": result}


@workflow.defn
class CancelMe:
    def __init__(self) -> None:
        self.state = "running"

    @workflow.query
    def current(self) -> str:
        return self.state

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                sleeper, 30.0, start_to_close_timeout=timedelta(seconds=60)
            )
        except ActivityError as err:
            # Cancelled while it awaits an activity, the workflow sees the activity's
            # error (as in Temporal); raised on, it cancels the workflow.
            if not isinstance(err.cause, CancelledError):
                raise
            self.state = "cleaning up"
            await workflow.execute_activity(cleanup, "cancelled", start_to_close_timeout=T)
            self.state = "cancelled"
            raise
        return "not cancelled"


@workflow.defn
class CancelOneActivity:
    """Cancels an activity's future, catches its ActivityError and goes on."""

    @workflow.run
    async def run(self, cancellation_type: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if cancellation_type is not None:
            options["cancellation_type"] = ActivityCancellationType[cancellation_type]
        future = workflow.start_activity(
            sleeper,
            30.0,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=5),
            **options,
        )
        await workflow.sleep(0.5)  # so the attempt runs and heartbeats
        future.cancel()
        cause = None
        try:
            await future
        except ActivityError as err:
            cause = type(err.cause).__name__
        after = await workflow.execute_activity(echo, "after", start_to_close_timeout=T)
        return {"cause": cause, "after": after}


@workflow.defn
class WaitForever:
    def __init__(self) -> None:
        self.pokes = 0

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.query
    def poked(self) -> int:
        return self.pokes

    @workflow.query(name="pokedPlus")
    def poked_plus(self, n: int, m: int = 0) -> int:
        return self.pokes + n + m

    @workflow.query
    def broken(self) -> int:
        raise ValueError("query handler bug")

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn
class Quick:
    @workflow.run
    async def run(self, value: Any = None) -> Any:
        return value


@workflow.defn(name="Evolving")
class EvolvingV1:
    def __init__(self) -> None:
        self.go = False
        self.stage = "start"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def current(self) -> str:
        return self.stage

    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(echo, "a", start_to_close_timeout=T)
        self.stage = "waiting"
        await workflow.wait_condition(lambda: self.go)
        await workflow.execute_activity(echo, "b", start_to_close_timeout=T)
        return "v1 done"


@workflow.defn(name="Evolving")
class EvolvingV2:
    """A bad deploy: a timer now comes before the first activity."""

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(0.01)
        await workflow.execute_activity(echo, "a", start_to_close_timeout=T)
        await workflow.wait_condition(lambda: self.go)
        return "v2 done"


@workflow.defn
class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.done = False

    @workflow.signal
    def add(self, n: int) -> None:
        self.seen.append(n)

    @workflow.signal
    async def finish(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return len(self.seen)

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: self.done)
        return self.seen


@workflow.defn
class Gather:
    @workflow.run
    async def run(self) -> list[Any]:
        started = workflow.now()
        results = await asyncio.gather(
            workflow.execute_activity(echo, 1, start_to_close_timeout=T),
            workflow.sleep(0.2),
            workflow.execute_activity(echo, "two", start_to_close_timeout=T),
            workflow.sleep(0.05),
        )
        elapsed = (workflow.now() - started).total_seconds()
        done, pending = await asyncio.wait(
            [
                asyncio.ensure_future(workflow.execute_activity(echo, 3, start_to_close_timeout=T)),
                asyncio.ensure_future(workflow.sleep(30)),
            ],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for p in pending:
            p.cancel()
        return [*results, elapsed >= 0.2, [t.result() for t in done]]


@workflow.defn
class Looper:
    @workflow.run
    async def run(self, n: int, runs: list[str]) -> dict[str, Any]:
        runs = [*runs, workflow.info().run_id]
        await workflow.sleep(0.01)
        if n < 3:
            workflow.continue_as_new(n + 1, runs)
        return {"n": n, "runs": runs}


@workflow.defn
class Chatty:
    @workflow.run
    async def run(self) -> None:
        for i in range(3):
            workflow.logger.info("chatty_step", step=i)
            await workflow.execute_activity(echo, i, start_to_close_timeout=T)
        workflow.logger.info("chatty_done")


@workflow.defn
class OtherQueue:
    @workflow.run
    async def run(self, value: str) -> list[Any]:
        here = await workflow.execute_activity(echo, value, start_to_close_timeout=T)
        there = await workflow.execute_activity(
            echo, value, task_queue="elsewhere", start_to_close_timeout=T
        )
        return [here, there, workflow.info().task_queue]


WORKFLOWS = [
    OtherQueue,
    CallActivity,
    CancelMe,
    CancelOneActivity,
    WaitForever,
    Quick,
    EvolvingV1,
    Recorder,
    Gather,
    Looper,
    Chatty,
    order.Order,
]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    defaults = {"workflows": WORKFLOWS, "activities": [*ACTIVITIES, *order.ACTIVITIES]}
    return queue_worker(client, defaults, options)


async def call_activity(
    client: Client, wid: str, name: str, *args: Any, **opts: Any
) -> dict[str, Any]:
    opts.setdefault("start_to_close_ms", 5000)
    async with worker(client):
        handle = await client.start_workflow(
            CallActivity.run, name, list(args), opts, id=wid, task_queue="q"
        )
        with anyio.fail_after(20):
            result: dict[str, Any] = await handle.result()
    return result


async def poked(handle: WorkflowHandle) -> bool:
    return bool(await handle.query(WaitForever.poked) == 1)
