"""Activities as temporalio users write them, on fakeredis and on a real server (the
`client` fixture): sync `def` activities in threads and process pools (heartbeats,
cancellation), bound methods, `activity.logger`, the activity's stack in the failure
chain, async completion, schedule-to-start timeouts and `no_remote_activities`."""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import pytest
import structlog

from sdk import (
    ActivityCancellationType,
    ActivityError,
    ActivityNotFoundError,
    ActivityTimeoutError,
    ApplicationError,
    AsyncActivityCancelledError,
    CancelledError,
    Client,
    InvalidArgumentError,
    RetryPolicy,
    Worker,
    WorkflowFailureError,
    activity,
    workflow,
)
from tests.integration.helpers import queue_worker

pytestmark = pytest.mark.anyio

T = timedelta(seconds=10)
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
#: What activities saw, by workflow id.
SEEN: dict[str, list[Any]] = defaultdict(list)
#: Task tokens handed out by activities that complete asynchronously, by workflow id.
TOKENS: dict[str, list[bytes]] = defaultdict(list)


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
    SEEN.clear()
    TOKENS.clear()


# --- activities -------------------------------------------------------------------------


@activity.defn
def sync_hello(name: str) -> dict[str, Any]:
    info = activity.info()
    activity.heartbeat("half-way")
    return {
        "greeting": f"hello {name}",
        "thread": threading.current_thread().name,
        "workflow_id": info.workflow_id,
        "attempt": info.attempt,
    }


@activity.defn
def sync_until_cancelled() -> str:
    """Heartbeats until heartbeat() raises: the thread's way to learn of a cancel."""
    wid = activity.info().workflow_id
    try:
        while True:
            activity.heartbeat()
            time.sleep(0.02)
    except CancelledError:
        SEEN[wid].append(("cancelled", activity.is_cancelled()))
        raise


@activity.defn
def sync_checkpointed() -> Any:
    """Attempt 1 heartbeats a checkpoint, then stalls past the heartbeat timeout: its
    next heartbeat raises (the attempt is stale). Attempt 2 returns the checkpoint."""
    info = activity.info()
    if info.attempt > 1:
        # The workflow ends with this result: first let attempt 1 (still running in its
        # thread) learn it is stale, or the worker may stop before it does.
        for _ in range(1000):
            if SEEN[info.workflow_id]:
                break
            time.sleep(0.01)
        return info.heartbeat_details
    activity.heartbeat("checkpoint", 7)
    activity.wait_for_cancelled_sync(0.8)  # the heartbeat timeout (300 ms) fires meanwhile
    try:
        # The worker learns the attempt is stale from the answer to a heartbeat: the
        # next one raises.
        for _ in range(500):
            activity.heartbeat("too late")
            time.sleep(0.02)
    except CancelledError:
        SEEN[info.workflow_id].append(("stale attempt learned it", activity.is_cancelled()))
        raise
    return "attempt 1 must not win"


@activity.defn
def crunch(n: int) -> dict[str, Any]:
    """CPU-bound work for a process pool."""
    info = activity.info()
    try:
        activity.heartbeat()
        heartbeat = "sent"
    except RuntimeError as exc:
        heartbeat = str(exc)
    return {"sum": sum(i * i for i in range(n)), "attempt": info.attempt, "heartbeat": heartbeat}


@activity.defn
def crunch_fails() -> None:
    raise ValueError("bad crunch")


class Payments:
    """Activities as methods of an object holding a dependency (a client, a fee)."""

    def __init__(self, fee: int) -> None:
        self.fee = fee

    @activity.defn
    async def charge(self, amount: int) -> int:
        return amount + self.fee

    @activity.defn(name="refund_sync")
    def refund(self, amount: int) -> int:
        return -amount - self.fee


@activity.defn
async def logs_a_line(customer: str) -> None:
    activity.logger.info("charged %s for %d items", customer, 3, extra={"customer": customer})


@activity.defn
def logs_from_a_thread() -> None:
    activity.logger.warning("from %s", "a thread")


def _raise_deep(message: str) -> None:
    raise ValueError(message)


@activity.defn
async def fails_deep() -> None:
    _raise_deep("deep failure")


@activity.defn
async def completes_later(value: str) -> str:
    info = activity.info()
    TOKENS[info.workflow_id].append(info.task_token)
    activity.raise_complete_async()


@activity.defn
def completes_later_sync() -> str:
    info = activity.info()
    TOKENS[info.workflow_id].append(info.task_token)
    activity.raise_complete_async()


@activity.defn
async def echo(value: Any) -> Any:
    return value


@activity.defn
async def slow_echo(value: Any) -> Any:
    await anyio.sleep(1.5)
    return value


PAYMENTS = Payments(fee=2)
ACTIVITIES = [
    sync_hello, sync_until_cancelled, sync_checkpointed, PAYMENTS.charge, PAYMENTS.refund,
    logs_a_line, logs_from_a_thread, fails_deep, completes_later, completes_later_sync,
    echo, slow_echo,
]


# --- workflows --------------------------------------------------------------------------


@workflow.defn
class RunOne:
    """Runs one activity (by name) and reports how it ended."""

    @workflow.run
    async def run(self, name: str, args: list[Any], opts: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"start_to_close_timeout": T}
        for key in ("start_to_close", "heartbeat", "schedule_to_start", "schedule_to_close"):
            if key in opts:
                options[f"{key}_timeout"] = timedelta(milliseconds=opts[key])
        options["retry_policy"] = RetryPolicy(
            initial_interval=timedelta(milliseconds=50),
            maximum_attempts=opts.get("max_attempts", 0),
        )
        try:
            return {"result": await workflow.execute_activity(name, *args, **options)}
        except ActivityError as exc:
            return {
                "cause": type(exc.cause).__name__,
                "attempt": exc.attempt,
                "message": str(exc.cause),
                "timeout_type": getattr(exc.cause, "timeout_type", None),
            }


@workflow.defn
class CancelSync:
    """Cancels a running sync activity and waits until its thread has stopped."""

    @workflow.run
    async def run(self) -> str:
        fut = workflow.start_activity(
            sync_until_cancelled,
            start_to_close_timeout=T,
            heartbeat_timeout=T,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.sleep(0.3)
        fut.cancel()
        try:
            await fut
        except ActivityError as err:
            return type(err.cause).__name__
        return "not cancelled"


@workflow.defn
class PaymentsWorkflow:
    @workflow.run
    async def run(self, amount: int) -> list[int]:
        charged = await workflow.execute_activity_method(
            Payments.charge, amount, start_to_close_timeout=T
        )
        refunded = await workflow.start_activity_method(
            Payments.refund, amount, start_to_close_timeout=T
        )
        return [charged, refunded]


@workflow.defn
class Fails:
    @workflow.run
    async def run(self) -> None:
        workflow.logger.info("workflow %s starts", "Fails")
        await workflow.execute_activity(fails_deep, start_to_close_timeout=T,
                                        retry_policy=ONE_ATTEMPT)


WORKFLOWS = [RunOne, CancelSync, PaymentsWorkflow, Fails]


def worker(client: Client, **options: Any) -> AbstractAsyncContextManager[Worker]:
    defaults = {"workflows": WORKFLOWS, "activities": ACTIVITIES, "graceful_shutdown_timeout": 0.5}
    return queue_worker(client, defaults, options)


async def run_one(client: Client, wid: str, name: str, *args: Any, **opts: Any) -> Any:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, name, list(args), opts, id=wid, task_queue="q"
        )
        with anyio.fail_after(20):
            return await handle.result()


@asynccontextmanager
async def other_client(client: Client, redis_url: str) -> AsyncIterator[Client]:
    """Another client of the same namespace: a connection of its own on a real server,
    the same fake server otherwise."""
    if client.fast is None:
        yield Client(client.redis, prefix=client.keys.prefix)
        return
    other = await Client.connect(redis_url, prefix=client.keys.prefix)
    try:
        yield other
    finally:
        await other.close()


async def token_of(wid: str, count: int = 1) -> bytes:
    with anyio.fail_after(10):
        while len(TOKENS[wid]) < count:
            await anyio.sleep(0.01)
    return TOKENS[wid][count - 1]


# --- sync activities ----------------------------------------------------------------------


async def test_sync_activity_runs_in_a_thread_with_info_and_heartbeat(client: Client) -> None:
    out = await run_one(client, "sync-1", "sync_hello", "ada")
    result = out["result"]
    assert result["greeting"] == "hello ada"
    assert result["thread"].startswith("redurable-activity")
    assert result["workflow_id"] == "sync-1"
    assert result["attempt"] == 1


async def test_sync_activity_in_a_given_thread_pool(client: Client) -> None:
    with concurrent.futures.ThreadPoolExecutor(thread_name_prefix="mine") as pool:
        async with worker(client, activity_executor=pool):
            out = await client.execute_workflow(
                RunOne.run, "sync_hello", ["bob"], {}, id="sync-pool", task_queue="q"
            )
        assert out["result"]["thread"].startswith("mine")
        assert pool.submit(lambda: "still open").result() == "still open"  # not shut down


async def test_sync_activity_heartbeating_is_cancelled(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(CancelSync.run, id="sync-cancel", task_queue="q")
        with anyio.fail_after(20):
            assert await handle.result() == "CancelledError"
        events = [e async for e in handle.fetch_history()]
    # The thread learned it from its heartbeat (is_cancelled() True by then), raised,
    # and its end was recorded as the cancellation the workflow waited for.
    assert SEEN["sync-cancel"] == [("cancelled", True)]
    failed = [e for e in events if e.type == "ActivityTaskFailed"]
    assert len(failed) == 1
    assert failed[0].attributes["failure"]["type"] == "CancelledError"


async def test_sync_activity_heartbeat_timeout_stale_attempt_and_details(client: Client) -> None:
    out = await run_one(client, "sync-hb", "sync_checkpointed", heartbeat=300)
    assert out == {"result": ["checkpoint", 7]}
    assert SEEN["sync-hb"] == [("stale attempt learned it", True)]


def _process_pool() -> concurrent.futures.ProcessPoolExecutor:
    # spawn: a fork of a process running an event loop and threads may deadlock.
    spawn = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)


async def test_process_pool_activity(client: Client) -> None:
    with _process_pool() as pool:
        async with worker(client, activities=[crunch, crunch_fails, echo], activity_executor=pool):
            out = await client.execute_workflow(
                RunOne.run, "crunch", [1000], {}, id="proc-1", task_queue="q"
            )
            failed = await client.execute_workflow(
                RunOne.run, "crunch_fails", [], {"max_attempts": 1}, id="proc-2",
                task_queue="q"
            )
            handle = client.get_workflow_handle("proc-2")
            events = [e async for e in handle.fetch_history()]
    assert out["result"]["sum"] == sum(i * i for i in range(1000))
    assert out["result"]["attempt"] == 1
    assert "does not reach the worker from a process pool" in out["result"]["heartbeat"]
    assert failed["cause"] == "ApplicationError"
    assert failed["message"] == "bad crunch"
    stack = next(e for e in events if e.type == "ActivityTaskFailed").attributes["failure"]["stack"]
    assert "crunch_fails" in stack  # the child's stack made the trip


async def test_process_pool_refuses_what_cannot_be_pickled(client: Client) -> None:
    def local() -> None: ...

    with _process_pool() as pool, pytest.raises(TypeError, match="must be picklable"):
        Worker(client, task_queue="q", activities=[activity.defn(local)],
               activity_executor=pool)


# --- bound methods -------------------------------------------------------------------------


async def test_bound_methods_as_activities(client: Client) -> None:
    async with worker(client):
        with anyio.fail_after(20):
            out = await client.execute_workflow(
                PaymentsWorkflow.run, 10, id="pay-1", task_queue="q"
            )
    assert out == [12, -12]


# --- logging ------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def stdlib_records() -> Iterator[list[logging.LogRecord]]:
    """A handler the user configured on the root logger, at INFO."""
    handler = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_activity_logger_reaches_stdlib_handlers_and_structlog(
    client: Client, stdlib_records: list[logging.LogRecord]
) -> None:
    with structlog.testing.capture_logs() as logs:
        await run_one(client, "log-1", "logs_a_line", "c-1")
        await run_one(client, "log-2", "logs_from_a_thread")
    mine = [r for r in stdlib_records if r.name == "redurable.activity"]
    assert [r.getMessage() for r in mine] == ["charged c-1 for 3 items", "from a thread"]
    first = mine[0]
    assert first.__dict__["workflow_id"] == "log-1"
    assert first.__dict__["activity_type"] == "logs_a_line"
    assert first.__dict__["activity_id"] == 1
    assert first.__dict__["attempt"] == 1
    assert first.__dict__["customer"] == "c-1"
    assert first.funcName == "logs_a_line"  # the caller, not the adapter
    assert mine[1].levelno == logging.WARNING
    assert mine[1].__dict__["workflow_id"] == "log-2"
    lines = [e for e in logs if e["event"] in ("charged c-1 for 3 items", "from a thread")]
    assert [(e["workflow_id"], e["attempt"]) for e in lines] == [("log-1", 1), ("log-2", 1)]
    assert lines[0]["customer"] == "c-1"


async def test_workflow_logger_reaches_stdlib_handlers(
    client: Client, stdlib_records: list[logging.LogRecord]
) -> None:
    async with worker(client, max_cached_workflows=0):  # every task replays from the start
        handle = await client.start_workflow(Fails.run, id="wf-log", task_queue="q")
        with anyio.fail_after(20), pytest.raises(WorkflowFailureError):
            await handle.result()
    mine = [r for r in stdlib_records if r.name == "redurable.workflow"]
    assert [r.getMessage() for r in mine] == ["workflow Fails starts"]  # once: not on replay
    assert mine[0].__dict__["workflow_id"] == "wf-log"
    assert mine[0].__dict__["workflow_type"] == "Fails"


# --- the failure chain --------------------------------------------------------------------


async def test_failure_chain_keeps_the_activity_stack(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(Fails.run, id="stack-1", task_queue="q")
        with anyio.fail_after(20), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    err = info.value
    assert isinstance(err.cause, ActivityError)
    assert isinstance(err.cause.cause, ApplicationError)
    assert err.cause.cause.type == "ValueError"
    stack = err.cause.cause.stack
    assert stack is not None
    assert "_raise_deep" in stack and "fails_deep" in stack


# --- async completion ---------------------------------------------------------------------


async def test_async_completion_from_another_client(client: Client, redis_url: str) -> None:
    async with worker(client), other_client(client, redis_url) as other:
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {}, id="async-1", task_queue="q"
        )
        token = await token_of("async-1")
        assert isinstance(token, bytes)
        await other.get_async_activity_handle(task_token=token).heartbeat("progress")
        await other.get_async_activity_handle(task_token=token).complete({"done": True})
        with anyio.fail_after(20):
            assert await handle.result() == {"result": {"done": True}}
        # The same token again: the attempt is over, nothing is applied.
        with pytest.raises(ActivityNotFoundError, match="not running"):
            await other.get_async_activity_handle(task_token=token).complete("twice")
        with pytest.raises(ActivityNotFoundError):
            await other.get_async_activity_handle(task_token=token).heartbeat()
        types = [e.type async for e in handle.fetch_history()]
    assert types.count("ActivityTaskCompleted") == 1


async def test_async_completion_of_a_sync_activity_by_ids(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later_sync", [], {}, id="async-ids", task_queue="q"
        )
        await token_of("async-ids")
        by_ids = client.get_async_activity_handle(workflow_id="async-ids", activity_id=1)
        await by_ids.complete("by ids")
        with anyio.fail_after(20):
            assert await handle.result() == {"result": "by ids"}


async def test_async_fail_is_retried_and_a_stale_token_is_rejected(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {"max_attempts": 2}, id="async-fail",
            task_queue="q",
        )
        first = await token_of("async-fail")
        await client.get_async_activity_handle(task_token=first).fail(
            ApplicationError("try again"), last_heartbeat_details=["cp"]
        )
        second = await token_of("async-fail", 2)
        assert second != first
        # Attempt 1 is over: its token completes nothing, even while attempt 2 runs.
        with pytest.raises(ActivityNotFoundError, match="attempt 1"):
            await client.get_async_activity_handle(task_token=first).complete("stale")
        await client.get_async_activity_handle(task_token=second).fail(
            ApplicationError("final", non_retryable=True)
        )
        with anyio.fail_after(20):
            out = await handle.result()
    assert out == {"cause": "ApplicationError", "attempt": 2, "message": "final",
                   "timeout_type": None}


async def test_async_activity_timeouts_keep_working(client: Client) -> None:
    # Heartbeats from the client keep it alive; then they stop and the timeout fires.
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {"heartbeat": 1500, "max_attempts": 1},
            id="async-hb", task_queue="q",
        )
        remote = client.get_async_activity_handle(task_token=await token_of("async-hb"))
        for _ in range(5):  # 0.5 s of heartbeats, each well within the timeout
            await remote.heartbeat()
            await anyio.sleep(0.1)
        with anyio.fail_after(20):
            out = await handle.result()
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "heartbeat"
    out = await run_one(client, "async-stc", "completes_later", "x", start_to_close=300,
                        max_attempts=1)
    assert out["timeout_type"] == "start_to_close"


async def test_async_report_cancellation_and_cancel_seen_by_heartbeat(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            RunOne.run, "completes_later", ["x"], {}, id="async-cancel", task_queue="q"
        )
        remote = client.get_async_activity_handle(task_token=await token_of("async-cancel"))
        await remote.report_cancellation("stopped")
        with anyio.fail_after(20):
            out = await handle.result()
    assert out["cause"] == "CancelledError"


async def test_async_handle_bad_input(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="not a task token"):
        client.get_async_activity_handle(task_token=b"\x93garbage")
    with pytest.raises(InvalidArgumentError):
        client.get_async_activity_handle(workflow_id="w")
    with pytest.raises(InvalidArgumentError):
        client.get_async_activity_handle(task_token=b"x", workflow_id="w", activity_id=1)
    with pytest.raises(InvalidArgumentError, match="not a number"):
        client.get_async_activity_handle(workflow_id="w", activity_id="one")
    with pytest.raises(InvalidArgumentError):
        client.get_async_activity_handle(workflow_id="bad{id}", activity_id=1)


async def test_async_heartbeat_of_a_cancelled_activity_raises(client: Client) -> None:
    @workflow.defn(name="CancelAsync")
    class CancelAsync:
        @workflow.run
        async def run(self) -> str:
            fut = workflow.start_activity(
                completes_later, "x", start_to_close_timeout=T,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            await workflow.sleep(0.2)
            fut.cancel()
            try:
                await fut
            except ActivityError as err:
                return type(err.cause).__name__
            return "completed"

    async with worker(client, workflows=[CancelAsync]):
        handle = await client.start_workflow(CancelAsync.run, id="async-c2", task_queue="q")
        remote = client.get_async_activity_handle(task_token=await token_of("async-c2"))
        with anyio.fail_after(10):
            while True:
                try:
                    await remote.heartbeat()
                except AsyncActivityCancelledError:
                    break
                await anyio.sleep(0.05)
        await remote.report_cancellation()
        with anyio.fail_after(20):
            assert await handle.result() == "CancelledError"


# --- schedule-to-start and no_remote_activities -------------------------------------------------


async def test_schedule_to_start_timeout_is_not_retried(client: Client) -> None:
    # No worker polls "q" for activities: the attempt never starts.
    async with worker(client, no_remote_activities=True):
        handle = await client.start_workflow(
            RunOne.run, "echo", [1], {"schedule_to_start": 300}, id="s2s-1", task_queue="q"
        )
        with anyio.fail_after(20):
            out = await handle.result()
        events = [e async for e in handle.fetch_history()]
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "schedule_to_start"
    assert out["attempt"] == 1
    assert [e.type for e in events].count("ActivityTaskTimedOut") == 1


async def test_schedule_to_start_timeout_does_not_stop_a_started_attempt(client: Client) -> None:
    # Started at once, then runs longer than the schedule-to-start timeout.
    out = await run_one(client, "s2s-2", "slow_echo", "ok", schedule_to_start=700)
    assert out == {"result": "ok"}


async def test_no_remote_activities_worker_polls_none(client: Client) -> None:
    with pytest.raises(ValueError, match="no_remote_activities"):
        Worker(client, task_queue="q", activities=[echo], no_remote_activities=True)
    async with worker(client, no_remote_activities=True):
        handle = await client.start_workflow(
            RunOne.run, "echo", ["hi"], {}, id="no-remote", task_queue="q"
        )
        async with worker(client, workflows=[], identity="activities-only"):
            with anyio.fail_after(20):
                assert await handle.result() == {"result": "hi"}


def test_activity_timeout_error_type() -> None:
    # The wire form of the new timeout type rebuilds as the error workflow code sees.
    from engine.errors import from_failure

    err = from_failure({"kind": "timeout", "message": "m", "timeout_type": "schedule_to_start"})
    assert isinstance(err, ActivityTimeoutError)
    assert err.timeout_type == "schedule_to_start"
