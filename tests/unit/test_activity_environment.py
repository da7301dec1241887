"""sdk.testing.ActivityEnvironment: activities run outside a worker with info(),
heartbeats and cancellation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import pytest

from engine.errors import CancelledError, PayloadError
from sdk import activity
from sdk.testing import ActivityEnvironment

pytestmark = pytest.mark.anyio


@activity.defn(name="charge")
async def charge(amount: int) -> str:
    info = activity.info()
    for step in range(3):
        activity.heartbeat(step, "of", 3)
    return f"{info.activity_type}/{info.workflow_id}/{info.attempt}: {amount}"


async def test_async_activity_runs_with_info_and_heartbeats() -> None:
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    assert await env.run(charge, 5) == "charge/test/1: 5"
    assert beats == [(0, "of", 3), (1, "of", 3), (2, "of", 3)]


async def test_info_can_be_set() -> None:
    env = ActivityEnvironment()
    env.info = activity.ActivityInfo(
        workflow_id="order-3",
        run_id="r",
        activity_id=4,
        activity_type="charge",
        attempt=2,
        task_queue="q",
    )
    assert await env.run(charge, 1) == "charge/order-3/2: 1"


@activity.defn
async def wait_for_cancel(started: anyio.Event) -> str:
    started.set()
    try:
        while True:
            await asyncio.sleep(0.01)
            activity.heartbeat()
    except asyncio.CancelledError:
        assert activity.is_cancelled()
        raise


async def test_cancel_cancels_a_running_async_activity() -> None:
    env = ActivityEnvironment()
    started = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def cancel_when_started() -> None:
            await started.wait()
            env.cancel()

        tg.start_soon(cancel_when_started)
        with pytest.raises(asyncio.CancelledError):
            await env.run(wait_for_cancel, started)


@activity.defn
async def cleans_up_on_cancel() -> str:
    while not activity.is_cancelled():
        activity.heartbeat()
        await asyncio.sleep(0)
    return "cleaned up"


async def test_cancel_from_a_heartbeat_callback() -> None:
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await env.run(cleans_up_on_cancel)
    assert env.cancelled


def count_words(text: str) -> int:
    activity.heartbeat(len(text))
    return len(text.split()) + activity.info().attempt - 1


def test_plain_function_runs_in_the_callers_thread() -> None:
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    assert env.run(count_words, "a b c") == 3
    assert beats == [(5,)]
    with pytest.raises(RuntimeError, match="not in an activity"):
        activity.info()  # the context does not leak out of run
    env.cancel()
    # As in a worker's thread pool: a cancelled sync activity learns it at its heartbeat.
    with pytest.raises(CancelledError):
        env.run(count_words, "a b c")


def wait_until_cancelled(started: threading.Event) -> str:
    started.set()
    if not activity.wait_for_cancelled_sync(timeout=30):
        return "never cancelled"
    assert activity.is_cancelled()
    return "stopped cleanly"


async def test_cancel_reaches_a_sync_activity_in_a_thread() -> None:
    env = ActivityEnvironment()
    started = threading.Event()
    async with anyio.create_task_group() as tg:

        async def cancel_when_started() -> None:
            await anyio.to_thread.run_sync(started.wait)
            env.cancel()

        tg.start_soon(cancel_when_started)
        with anyio.fail_after(30):
            result = await anyio.to_thread.run_sync(env.run, wait_until_cancelled, started)
    assert result == "stopped cleanly"


async def test_heartbeat_details_the_codec_refuses_raise_in_the_activity() -> None:
    @activity.defn
    async def bad_heartbeat() -> None:
        activity.heartbeat(object())

    with pytest.raises(PayloadError):
        await ActivityEnvironment().run(bad_heartbeat)


def test_run_needs_a_function() -> None:
    with pytest.raises(TypeError, match="needs a function"):
        ActivityEnvironment().run(3)  # type: ignore[arg-type]
