"""What the activity tests (test_activities.py, test_async_completion.py) share: the
activities (sync, process-pool, bound methods, async completion) and workflows they
run, the records the activities keep, and the worker and client helpers."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sdk import (
    ActivityCancellationType,
    ActivityError,
    CancelledError,
    Client,
    RetryPolicy,
    Worker,
    activity,
    workflow,
)
from tests.integration.helpers import queue_worker

T = timedelta(seconds=10)
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
#: What activities saw, by workflow id.
SEEN: dict[str, list[Any]] = defaultdict(list)
#: Task tokens handed out by activities that complete asynchronously, by workflow id.
TOKENS: dict[str, list[bytes]] = defaultdict(list)


@pytest.fixture(autouse=True)
def fresh_records() -> None:
    """Autouse in each test module that imports it: no test sees another's records."""
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
