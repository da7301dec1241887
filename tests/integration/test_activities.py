"""Activities as temporalio users write them, on fakeredis and on a real server (the
`client` fixture): sync `def` activities in threads and process pools (heartbeats,
cancellation), bound methods, `activity.logger`, the activity's stack in the failure
chain, schedule-to-start timeouts and `no_remote_activities`. Async completion is in
test_async_completion.py."""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
from collections.abc import Iterator

import anyio
import pytest
import structlog

from sdk import (
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    Client,
    Worker,
    WorkflowFailureError,
    activity,
)
from tests.integration.activity_workflows import (
    SEEN,
    CancelSync,
    Fails,
    PaymentsWorkflow,
    RunOne,
    crunch,
    crunch_fails,
    echo,
    fresh_records,  # noqa: F401 (autouse)
    run_one,
    worker,
)

pytestmark = pytest.mark.anyio


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
