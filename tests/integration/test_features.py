"""Core features end to end, on fakeredis and on a real server (the `client` fixture):
retries and timeouts, cancel and terminate, non-determinism in a live worker, bad
input, signals, queries, listing, logging, gather and continue-as-new."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest
import structlog

from sdk import (
    ActivityCancellationType,
    ActivityError,
    ApplicationError,
    CancelledError,
    Client,
    InvalidArgumentError,
    PayloadError,
    QueryFailedError,
    QueryTimeoutError,
    RetryPolicy,
    TerminatedError,
    UnknownQueryError,
    Worker,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    activity,
    workflow,
)
from sdk.examples import order
from tests.integration.helpers import eventually, queue_worker

pytestmark = pytest.mark.anyio

T = timedelta(seconds=10)
#: (attempt, monotonic time, heartbeat details) of every activity call, by workflow id.
CALLS: dict[str, list[tuple[int, float, Any]]] = defaultdict(list)
CLEANUPS: list[str] = []


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
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


# --- retries ----------------------------------------------------------------------------


async def test_retry_with_exponential_backoff(client: Client) -> None:
    out = await call_activity(client, "retry-backoff", "flaky", 3, initial_ms=100, backoff=2.0)
    assert out == {"result": 4}
    calls = CALLS["retry-backoff"]
    assert [attempt for attempt, _, _ in calls] == [1, 2, 3, 4]
    delays = [b[1] - a[1] for a, b in itertools.pairwise(calls)]
    # 100, 200, 400 ms (timers fire on a 50 ms tick): each at least its interval, growing.
    for delay, expected in zip(delays, (0.1, 0.2, 0.4), strict=True):
        assert delay >= expected * 0.9, delays
    assert delays[0] < delays[1] < delays[2], delays


async def test_retry_maximum_interval_caps_the_backoff(client: Client) -> None:
    out = await call_activity(
        client, "retry-capped", "flaky", 3, initial_ms=100, backoff=10.0, max_interval_ms=150
    )
    assert out == {"result": 4}
    calls = CALLS["retry-capped"]
    delays = [b[1] - a[1] for a, b in itertools.pairwise(calls)]
    # 100 ms, then 1 s and 10 s capped at 150 ms.
    assert delays[0] >= 0.09, delays
    assert all(0.13 <= d < 0.6 for d in delays[1:]), delays


async def test_retry_maximum_attempts(client: Client) -> None:
    out = await call_activity(client, "retry-max", "flaky", 99, max_attempts=3)
    assert out["error"] == "ActivityError"
    assert out["attempt"] == 3
    assert out["cause"] == "ApplicationError"
    assert out["message"] == "boom #3"
    assert len(CALLS["retry-max"]) == 3


async def test_non_retryable_error_types(client: Client) -> None:
    out = await call_activity(
        client, "retry-nonretryable-type", "flaky", 99, "Fatal", non_retryable=["Fatal"]
    )
    assert out["attempt"] == 1
    assert out["error_type"] == "Fatal"
    assert len(CALLS["retry-nonretryable-type"]) == 1


async def test_non_retryable_exception_class_name(client: Client) -> None:
    out = await call_activity(
        client, "retry-valueerror", "raise_value_error", non_retryable=["ValueError"]
    )
    assert out["attempt"] == 1
    assert out["error_type"] == "ValueError"
    assert "not a good value" in out["message"]
    assert len(CALLS["retry-valueerror"]) == 1


async def test_application_error_non_retryable(client: Client) -> None:
    out = await call_activity(client, "retry-flagged", "flaky", 99, None, True)
    assert out["attempt"] == 1
    assert out["cause"] == "ApplicationError"
    assert len(CALLS["retry-flagged"]) == 1


async def test_describe_shows_pending_activity_while_retrying(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            CallActivity.run,
            "flaky",
            [2],
            {"initial_ms": 300, "start_to_close_ms": 5000},
            id="retry-describe",
            task_queue="q",
        )
        seen = []

        async def retrying() -> bool:
            desc = await handle.describe()
            seen.extend(desc.pending_activities)
            return any(p.attempt >= 2 and p.last_failure for p in desc.pending_activities)

        await eventually(retrying)
        pending = next(p for p in seen if p.attempt >= 2 and p.last_failure)
        assert pending.activity_id == 1
        assert pending.activity_type == "flaky"
        assert pending.last_failure is not None
        assert pending.last_failure["message"].startswith("boom #")
        assert pending.state in ("BACKOFF", "SCHEDULED", "STARTED")
        assert pending.scheduled_time is not None
        with anyio.fail_after(10):
            assert await handle.result() == {"result": 3}
        assert (await handle.describe()).pending_activities == []


# --- timeouts ---------------------------------------------------------------------------


async def test_start_to_close_timeout(client: Client) -> None:
    out = await call_activity(
        client, "timeout-stc", "sleeper", 3.0, start_to_close_ms=200, max_attempts=2
    )
    assert out["error"] == "ActivityError"
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "start_to_close"
    assert out["attempt"] == 2
    assert [a for a, _, _ in CALLS["timeout-stc"]] == [1, 2]  # timed out, then retried


async def test_heartbeat_timeout_and_details_reach_next_attempt(client: Client) -> None:
    out = await call_activity(
        client, "timeout-hb", "checkpointed", heartbeat_ms=500, start_to_close_ms=10000
    )
    assert out == {"result": ["checkpoint", 7]}
    calls = CALLS["timeout-hb"]
    assert [a for a, _, _ in calls] == [1, 2]
    assert calls[0][2] is None
    assert calls[1][2] == ["checkpoint", 7]


async def test_heartbeat_timeout_final(client: Client) -> None:
    out = await call_activity(
        client, "timeout-hb-final", "checkpointed", heartbeat_ms=300, max_attempts=1
    )
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "heartbeat"


async def test_schedule_to_close_timeout(client: Client) -> None:
    started = time.monotonic()
    out = await call_activity(client, "timeout-s2c", "sleeper", 5.0, schedule_to_close_ms=300)
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "schedule_to_close"
    assert out["attempt"] == 1
    assert time.monotonic() - started < 4


async def test_schedule_to_close_stops_retries(client: Client) -> None:
    out = await call_activity(
        client, "timeout-s2c-retry", "flaky", 99, schedule_to_close_ms=400, initial_ms=100
    )
    assert out["error"] == "ActivityError"
    assert 1 < len(CALLS["timeout-s2c-retry"]) < 5


# --- cancel and terminate -------------------------------------------------------------------


async def test_cancel_runs_cleanup_and_fails_result(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(CancelMe.run, id="cancel-1", task_queue="q")

        async def activity_started() -> bool:
            desc = await handle.describe()
            return any(p.state == "STARTED" for p in desc.pending_activities)

        await eventually(activity_started)
        await handle.cancel("changed my mind")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, CancelledError)
        assert CLEANUPS == ["cancelled"]
        desc = await handle.describe()
        assert desc.status == "CANCELED"
        assert desc.close_time is not None
        assert await handle.query(CancelMe.current) == "cancelled"
        types = [e.type async for e in handle.fetch_history()]
        assert "WorkflowExecutionCancelRequested" in types
        assert "ActivityTaskCanceled" in types
        assert types[-1] == "WorkflowExecutionCanceled"
        with pytest.raises(WorkflowNotRunningError):
            await handle.cancel()
    # The cancelled attempt learned it from its heartbeat and stopped early.
    assert len(CALLS["cancel-1"]) == 1


@pytest.mark.parametrize(
    "cancellation_type", [None, "TRY_CANCEL", "WAIT_CANCELLATION_COMPLETED", "ABANDON"]
)
async def test_cancelled_activity_raises_activity_error(
    client: Client, cancellation_type: str | None
) -> None:
    """As in Temporal: the await raises ActivityError(cause=CancelledError) and the
    workflow goes on (it used to raise asyncio.CancelledError, cancelling it whole)."""
    async with worker(client):
        wf_id = f"cancel-act-{cancellation_type}"
        handle = await client.start_workflow(
            CancelOneActivity.run, cancellation_type, id=wf_id, task_queue="q"
        )
        with anyio.fail_after(15):
            assert await handle.result() == {"cause": "CancelledError", "after": "after"}
        events = [e async for e in handle.fetch_history()]
    types = [e.type for e in events]
    ended = [e for e in events if e.type == "ActivityTaskFailed"]
    after = types.index("ActivityTaskScheduled", types.index("ActivityTaskScheduled") + 1)
    if cancellation_type == "ABANDON":
        assert "ActivityTaskCanceled" not in types  # never asked to stop
        assert not ended
    elif cancellation_type == "WAIT_CANCELLATION_COMPLETED":
        # The workflow went on only once the attempt's end was recorded.
        assert len(ended) == 1
        assert ended[0].attributes["failure"]["type"] == "CancelledError"
        assert types.index("ActivityTaskCanceled") < types.index("ActivityTaskFailed") < after
        assert len(CALLS[wf_id]) == 2  # the sleeper stopped; then echo
    else:
        # TRY_CANCEL: resolved at once, in the activation that asked to cancel.
        assert types[after - 1] == "ActivityTaskCanceled"
        assert not ended


async def test_terminate(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(WaitForever.run, id="term-1", task_queue="q")
        await handle.signal(WaitForever.poke)
        await eventually(lambda: _poked(handle))
        await handle.terminate(reason="operator said so")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, TerminatedError)
        assert "operator said so" in str(info.value.cause)
        desc = await handle.describe()
        assert desc.status == "TERMINATED"
        events = [e async for e in handle.fetch_history()]
        assert events[-1].type == "WorkflowExecutionTerminated"
        assert events[-1].attributes["reason"] == "operator said so"
        with pytest.raises(WorkflowNotRunningError):
            await handle.signal(WaitForever.poke)
        with pytest.raises(WorkflowNotRunningError):
            await handle.terminate()
        # Queries still work on a terminated run (by replay).
        assert await handle.query(WaitForever.poked) == 1


async def _poked(handle: WorkflowHandle) -> bool:
    return bool(await handle.query(WaitForever.poked) == 1)


# --- workflow task failures ---------------------------------------------------------------


async def test_nondeterminism_in_live_worker(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(EvolvingV1.run, id="evolve-1", task_queue="q")

        async def waiting() -> bool:
            return bool(await handle.query(EvolvingV1.current) == "waiting")

        await eventually(waiting)
    before = [(e.event_id, e.type) async for e in handle.fetch_history()]

    # A worker with changed code picks the workflow up (no cache: it replays).
    async with worker(client, workflows=[EvolvingV2]):
        await handle.signal(EvolvingV1.proceed)

        async def retried() -> bool:
            desc = await handle.describe()
            return desc.workflow_task_attempt >= 3

        await eventually(retried)
        desc = await handle.describe()
        assert desc.status == "RUNNING"
        failure = desc.last_workflow_task_failure
        assert failure is not None
        assert failure["type"] == "NondeterminismError"
        assert "ActivityTaskScheduled" in failure["message"]
        assert "StartTimer" in failure["message"]
    after = [(e.event_id, e.type) async for e in handle.fetch_history()]
    # Nothing written by the failing tasks: only the signal was appended.
    assert after == [*before, (len(before) + 1, "WorkflowExecutionSignaled")]

    # The right code again: the workflow carries on from where it was.
    async with worker(client):
        with anyio.fail_after(10):
            assert await handle.result() == "v1 done"
    assert (await handle.describe()).last_workflow_task_failure is None


async def test_unknown_workflow_type_is_a_task_failure(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow("NoSuchWorkflow", 1, id="unknown-1", task_queue="q")

        async def failed() -> bool:
            return (await handle.describe()).last_workflow_task_failure is not None

        await eventually(failed)
        desc = await handle.describe()
        assert desc.status == "RUNNING"
        assert desc.last_workflow_task_failure is not None
        assert "NoSuchWorkflow" in desc.last_workflow_task_failure["message"]
        assert "not registered" in desc.last_workflow_task_failure["message"]
        # The worker is fine: other workflows run.
        with anyio.fail_after(10):
            assert await client.execute_workflow(Quick.run, 5, id="unknown-2", task_queue="q") == 5


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["has{brace", "has}brace", "new\nline", "nul\x00", "tab\t", "", "x" * 257]
)
async def test_bad_workflow_ids(client: Client, bad_id: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id=bad_id, task_queue="q")
    with pytest.raises(InvalidArgumentError):
        client.get_workflow_handle(bad_id)


async def test_bad_names(client: Client) -> None:
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow("", id="ok", task_queue="q")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow("Bad{Type}", id="ok", task_queue="q")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id="ok", task_queue="")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id="ok", task_queue="has space")
    with pytest.raises(InvalidArgumentError):
        await client.start_workflow(Quick.run, id="ok", task_queue="q" * 129)
    handle = await client.start_workflow(Quick.run, id="ok", task_queue="q")
    with pytest.raises(InvalidArgumentError):
        await handle.signal("")
    with pytest.raises(InvalidArgumentError):
        await handle.query("bad\x01name")
    with pytest.raises(InvalidArgumentError):
        async for _ in client.list_workflows(status="NOPE"):
            pass
    # Nothing of the rejected starts reached Redis.
    assert [w.id async for w in client.list_workflows()] == ["ok"]


async def test_payload_over_limit(client: Client) -> None:
    big = "x" * (2 * 1024 * 1024 + 1)
    with pytest.raises(PayloadError, match="over the limit"):
        await client.start_workflow(Quick.run, big, id="big-1", task_queue="q")
    handle = await client.start_workflow(WaitForever.run, id="big-2", task_queue="q")
    with pytest.raises(PayloadError):
        await handle.signal(WaitForever.poke, big)
    with pytest.raises(PayloadError, match="cannot be encoded"):
        await client.start_workflow(Quick.run, object(), id="big-3", task_queue="q")
    assert [e.type async for e in handle.fetch_history()] == ["WorkflowExecutionStarted"]


async def test_already_started(client: Client) -> None:
    first = await client.start_workflow(WaitForever.run, id="dup-1", task_queue="q")
    with pytest.raises(WorkflowAlreadyStartedError) as info:
        await client.start_workflow(WaitForever.run, id="dup-1", task_queue="q")
    assert info.value.run_id == first.run_id
    # Once closed, the id can be used again: a new run.
    await first.terminate()
    second = await client.start_workflow(Quick.run, 1, id="dup-1", task_queue="q")
    assert second.run_id != first.run_id
    async with worker(client):
        with anyio.fail_after(10):
            assert await second.result() == 1


async def test_signal_unknown_and_closed_workflow(client: Client) -> None:
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").signal("poke")
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").cancel()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").terminate()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").describe()
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nobody").result(timeout=2)
    with pytest.raises(WorkflowNotFoundError):
        _ = [e async for e in client.get_workflow_handle("nobody").fetch_history()]
    async with worker(client):
        with anyio.fail_after(10):
            await client.execute_workflow(Quick.run, id="closed-1", task_queue="q")
    with pytest.raises(WorkflowNotRunningError) as info:
        await client.get_workflow_handle("closed-1").signal("poke")
    assert info.value.status == "COMPLETED"


# --- queries ----------------------------------------------------------------------------


async def test_query_errors(client: Client) -> None:
    handle = await client.start_workflow(WaitForever.run, id="query-1", task_queue="q")
    # No worker polls the queue: the query times out, with a hint.
    with pytest.raises(QueryTimeoutError, match="no live worker"):
        await handle.query(WaitForever.poked, timeout=0.3)
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("query-nobody").query("poked")
    async with worker(client):
        assert await handle.query(WaitForever.poked) == 0
        with pytest.raises(UnknownQueryError, match="no_such_query") as info:
            await handle.query("no_such_query")
        assert "poked" in str(info.value)
        with pytest.raises(QueryFailedError, match="query handler bug"):
            await handle.query(WaitForever.broken)
        await handle.signal(WaitForever.poke)
        await eventually(lambda: _poked(handle))
        assert await handle.query("pokedPlus", 10, 100) == 111
        assert await handle.query(WaitForever.poked_plus, 1) == 2


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_a_query_may_wait_longer_than_five_seconds(real_client: Client) -> None:
    """redis-py 8 gives its pools a 5 s read timeout by default: a query's BLPOP with a
    longer timeout failed with a redis TimeoutError after 5 s, not QueryTimeoutError."""
    handle = await real_client.start_workflow(WaitForever.run, id="query-6s", task_queue="q")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="within 6"):
        await handle.query(WaitForever.poked, timeout=6)
    assert time.monotonic() - started >= 6


async def test_queries_after_completion_by_replay(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(order.Order.run, 3, 0.05, id="order-q", task_queue="q")

        async def state_is(state: str) -> bool:
            status = await handle.query(order.Order.get_status)
            return bool(status["state"] == state)

        await eventually(lambda: state_is("Paid"))
        await handle.signal(order.Order.picked_up)
        await eventually(lambda: state_is("Picked up"))
        await handle.signal(order.Order.delivered)
        with anyio.fail_after(10):
            assert await handle.result() == "Completed"
    # A new worker has nothing cached: it answers by replaying the history.
    async with worker(client, max_cached_workflows=0):
        status = await handle.query("get_status")
    assert status["state"] == "Completed"
    assert status["product_id"] == 3
    assert status["delivered_at"] is not None


# --- signals ----------------------------------------------------------------------------


async def test_signals_applied_in_order(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Recorder.run, id="signals-1", task_queue="q")
        for n in range(50):
            await handle.signal(Recorder.add, n)
        await handle.signal(Recorder.finish)
        with anyio.fail_after(10):
            assert await handle.result() == list(range(50))
    signals = [e async for e in handle.fetch_history() if e.type == "WorkflowExecutionSignaled"]
    assert [e.attributes["input"] for e in signals[:-1]] == [[n] for n in range(50)]


async def test_concurrent_signals_none_lost_or_duplicated(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Recorder.run, id="signals-2", task_queue="q")
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(handle.signal, Recorder.add, n)

        async def all_in() -> bool:
            return bool(await handle.query(Recorder.count) == 50)

        await eventually(all_in)
        await handle.signal(Recorder.finish)
        with anyio.fail_after(10):
            seen = await handle.result()
    assert sorted(seen) == list(range(50))


# --- listing ----------------------------------------------------------------------------


async def test_list_workflows_filters_and_pages(client: Client) -> None:
    ids = [f"list-{i:02d}" for i in range(12)]
    for wid in ids[:8]:
        await client.start_workflow(WaitForever.run, id=wid, task_queue="q")
    for wid in ids[8:]:
        await client.start_workflow(Quick.run, id=wid, task_queue="q")
    async with worker(client):
        for wid in ids[8:]:
            with anyio.fail_after(10):
                await client.get_workflow_handle(wid).result()
    await client.get_workflow_handle(ids[0]).terminate()
    shards = {client.keys.shard(wid) for wid in ids}
    assert len(shards) > 1  # the listing really merges shards

    async def listed(**kw: Any) -> list[str]:
        return [w.id async for w in client.list_workflows(**kw)]

    everything = await listed(page_size=5)
    assert sorted(everything) == ids  # no duplicates, none missing
    assert sorted(await listed(page_size=1)) == ids
    assert sorted(await listed(status="RUNNING", page_size=3)) == ids[1:8]
    assert sorted(await listed(status="COMPLETED", page_size=3)) == ids[8:]
    assert await listed(status="TERMINATED") == [ids[0]]
    assert sorted(await listed(type="Quick", page_size=2)) == ids[8:]
    assert sorted(await listed(type="WaitForever", status="RUNNING")) == ids[1:8]
    assert await listed(type="NoSuchType") == []
    rows = [w async for w in client.list_workflows(status="COMPLETED")]
    assert all(w.workflow_type == "Quick" and w.close_time is not None for w in rows)
    starts = [w.start_time async for w in client.list_workflows() if w.start_time]
    assert len(starts) == len(ids)
    assert starts == sorted(starts, reverse=True)  # newest first


async def test_list_workflows_pages_through_equal_start_times(client: Client) -> None:
    """Many workflows started in the same millisecond: pages must neither repeat nor
    skip them (the cursor is a score, ties are told apart by member)."""
    ids = [f"tie-{i:02d}" for i in range(12)]
    for wid in ids:
        await client.start_workflow(WaitForever.run, id=wid, task_queue="q")
    for shard in range(client.keys.shards):
        key = client.keys.index_start(shard)
        members: Any = await client.redis.zrange(key, 0, -1)
        if members:
            await client.redis.zadd(key, dict.fromkeys(members, 1_700_000_000_000))
    with anyio.fail_after(5):
        listed = [w.id async for w in client.list_workflows(page_size=5)]
    assert sorted(listed) == ids


# --- logging, gather, continue-as-new -----------------------------------------------------


async def test_workflow_logger_silent_on_replay(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        # No sticky cache: every workflow task replays the whole history.
        async with worker(client, max_cached_workflows=0):
            with anyio.fail_after(10):
                await client.execute_workflow(Chatty.run, id="chatty-1", task_queue="q")
    lines = [(e["event"], e.get("step")) for e in logs if e["event"].startswith("chatty")]
    assert lines == [
        ("chatty_step", 0),
        ("chatty_step", 1),
        ("chatty_step", 2),
        ("chatty_done", None),
    ]
    assert all(e["workflow_id"] == "chatty-1" for e in logs if e["event"].startswith("chatty"))


async def test_gather_over_activities_and_timers(client: Client) -> None:
    async with worker(client):
        with anyio.fail_after(10):
            result = await client.execute_workflow(Gather.run, id="gather-1", task_queue="q")
    assert result == [1, None, "two", None, True, [3]]


async def test_continue_as_new(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Looper.run, 1, [], id="loop-1", task_queue="q")
        with anyio.fail_after(10):
            result = await handle.result()
    assert result["n"] == 3
    assert len(set(result["runs"])) == 3
    assert result["runs"][0] == handle.run_id
    desc = await handle.describe()
    assert desc.status == "COMPLETED"
    assert desc.run_id == result["runs"][-1]
    events = [e async for e in handle.fetch_history()]
    assert events[0].type == "WorkflowExecutionStarted"
    assert events[0].attributes["input"] == [3, result["runs"][:2]]
    assert [w.id async for w in client.list_workflows()] == ["loop-1"]


async def _all(it: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in it]


async def test_activity_on_another_task_queue(client: Client) -> None:
    async with worker(client), worker(client, task_queue="elsewhere", workflows=[]):
        with anyio.fail_after(10):
            result = await client.execute_workflow(
                OtherQueue.run, "x", id="other-queue", task_queue="q"
            )
    assert result == ["x", "x", "q"]


async def test_describe_and_history_paging(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Gather.run, id="describe-1", task_queue="q")
        with anyio.fail_after(10):
            await handle.result()
    desc = await handle.describe()
    assert (desc.id, desc.status, desc.workflow_type, desc.task_queue) == (
        "describe-1",
        "COMPLETED",
        "Gather",
        "q",
    )
    assert desc.run_id == handle.run_id
    assert desc.start_time is not None and desc.close_time is not None
    assert desc.start_time <= desc.close_time
    assert desc.pending_activities == []
    assert desc.last_workflow_task_failure is None
    events = [e async for e in handle.fetch_history()]
    assert desc.history_length == len(events) > 10
    paged = [e async for e in handle.fetch_history(page_size=2)]
    assert paged == events
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(events))
    scheduled = [e for e in events if e.type == "ActivityTaskScheduled"]
    assert scheduled[0].attributes["activity_type"] == "echo"
    assert scheduled[0].attributes["input"] == [1]  # payloads decoded
    assert scheduled[0].attributes["options"]["start_to_close_ms"] == 10_000
