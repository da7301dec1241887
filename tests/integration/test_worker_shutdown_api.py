"""`activity.wait_for_worker_shutdown()`, `wait_for_worker_shutdown_sync()` and
`is_worker_shutdown()`: set when the worker begins its graceful shutdown, in async
activities and in sync ones (threads); and `ActivityEnvironment.worker_shutdown()`."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import anyio
import pytest

from sdk import Client, Worker, activity, workflow
from sdk.testing import ActivityEnvironment

pytestmark = pytest.mark.anyio

STARTED: set[str] = set()
LOCK = threading.Lock()


def _started(name: str) -> None:
    with LOCK:
        STARTED.add(name)


@activity.defn
async def async_waiter() -> str:
    before = activity.is_worker_shutdown()
    _started("async")
    await activity.wait_for_worker_shutdown()
    return f"async {before} {activity.is_worker_shutdown()}"


@activity.defn
def sync_waiter() -> str:
    before = activity.is_worker_shutdown()
    _started("sync")
    got = activity.wait_for_worker_shutdown_sync(30)
    return f"sync {before} {got} {activity.is_worker_shutdown()}"


@workflow.defn
class Both:
    @workflow.run
    async def run(self) -> list[str]:
        timeout = timedelta(seconds=60)
        return list(await asyncio.gather(
            workflow.execute_activity(async_waiter, start_to_close_timeout=timeout),
            workflow.execute_activity(sync_waiter, start_to_close_timeout=timeout),
        ))


async def test_activities_learn_of_the_graceful_shutdown(client: Client) -> None:
    STARTED.clear()
    options = {"task_queue": "q", "workflows": [Both], "activities": [async_waiter, sync_waiter],
               "graceful_shutdown_timeout": 10.0}
    async with Worker(client, **options):  # type: ignore[arg-type]
        handle = await client.start_workflow(Both.run, id="sd-1", task_queue="q")
        with anyio.fail_after(10):
            while {"async", "sync"} != STARTED:
                await anyio.sleep(0.02)
    # The shutdown let both activities end (their results landed while it drained);
    # another worker runs the workflow on.
    async with Worker(client, **options):  # type: ignore[arg-type]
        with anyio.fail_after(10):
            assert await handle.result() == ["async False True", "sync False True True"]


async def test_activity_environment_worker_shutdown() -> None:
    env = ActivityEnvironment()

    async def later() -> None:
        await anyio.sleep(0.05)
        env.worker_shutdown()

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        with anyio.fail_after(5):
            assert await env.run(async_waiter) == "async False True"
    assert env.run(sync_waiter) == "sync True True True"
