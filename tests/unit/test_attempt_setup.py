"""What an attempt's cheaper setup must keep (sdk/worker/activity_attempt.py new_scope,
activity_tasks.py _context/_run): who cancelled decides the completion (a cancel from
the workflow fails the attempt as CancelledError, the worker's stop hands the task
back), the activity's own shielded scopes hold a cancel off, activity.info() and its
task token, and the fields bound for the attempt's log lines, unbound at its end."""

from __future__ import annotations

from typing import Any

import anyio
import msgpack
import pytest
import structlog

from engine.task_token import ActivityRef, decode_task_token, encode_task_token
from sdk import Client, Worker, activity
from sdk.worker.task_entry import TaskEntry

pytestmark = pytest.mark.anyio
QUEUE = "q"


def fields(activity_type: str) -> dict[bytes, bytes]:
    return {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"7", b"attempt": b"2",
            b"activity_type": activity_type.encode(), b"input": b"\x90"}


async def run_one(client: Client, fn: Any, then: Any = None) -> tuple[Any, list[Any]]:
    """Start one attempt of `fn`; `then(running)` once it runs; the completions made."""
    worker = Worker(client, task_queue=QUEUE, activities=[fn], handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            activities.start([TaskEntry(stream, "1-0", fields(fn.__name__))])
            (running,) = activities.running.values()
            if then is not None:
                await then(running)
            while activities.running:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    return running, activities.completions


async def test_a_cancel_from_the_workflow_fails_the_attempt_and_a_release_hands_it_back(
    fake_client: Client,
) -> None:
    started = anyio.Event()

    @activity.defn
    async def waits() -> None:
        started.set()
        await anyio.sleep(30)

    async def cancel(running: Any) -> None:
        await started.wait()
        running.cancel()

    _, (call,) = await run_one(fake_client, waits, cancel)
    assert call.function == "rd_act_complete"
    assert "failed" in call.args and "CancelledError" in call.args  # outcome, error type

    started = anyio.Event()

    async def release(running: Any) -> None:
        await started.wait()
        running.release()

    _, (call,) = await run_one(fake_client, waits, release)
    assert call.function == "rd_release"


async def test_a_shielded_part_of_an_activity_holds_a_cancel_off(fake_client: Client) -> None:
    started, steps = anyio.Event(), []

    @activity.defn
    async def shields() -> None:
        with anyio.CancelScope(shield=True):
            started.set()
            await anyio.sleep(0.2)
            steps.append("shielded part done")
        await anyio.sleep(30)
        steps.append("never")

    async def cancel(running: Any) -> None:
        await started.wait()
        running.cancel()
        assert activity_is_cancelled(running)

    _, (call,) = await run_one(fake_client, shields, cancel)
    assert steps == ["shielded part done"]
    assert call.function == "rd_act_complete" and "CancelledError" in call.args


def activity_is_cancelled(running: Any) -> bool:
    return bool(running.context.cancel_requested)


async def test_info_the_token_and_the_log_fields_of_an_attempt(fake_client: Client) -> None:
    seen: dict[str, Any] = {}

    @activity.defn
    async def looks() -> None:
        seen["info"] = activity.info()
        seen["log"] = structlog.contextvars.get_contextvars()

    await run_one(fake_client, looks)
    info = seen["info"]
    assert (info.workflow_id, info.run_id, info.activity_id, info.attempt,
            info.activity_type, info.task_queue) == ("w", "r", 7, 2, "looks", QUEUE)
    assert decode_task_token(info.task_token) == ActivityRef("w", "r", 7, 2)
    assert seen["log"] == {"workflow_id": "w", "run_id": "r", "activity": "looks",
                           "attempt": 2, "task_queue": QUEUE}
    # Bound in the attempt's own task only: nothing is left bound here.
    assert structlog.contextvars.get_contextvars() == {}


def test_the_token_encoded_without_its_ref_is_the_refs() -> None:
    assert encode_task_token("w", "r", 7, 2) == ActivityRef("w", "r", 7, 2).encode()
    assert msgpack.unpackb(encode_task_token("w", "r", 7, 2)) == [1, "w", "r", 7, 2]


async def test_attempts_with_short_timeouts_are_marked_at_once_the_others_later(
    fake_client: Client,
) -> None:
    release = anyio.Event()

    @activity.defn
    async def holds() -> None:
        await release.wait()

    worker = Worker(fake_client, task_queue=QUEUE, activities=[holds], handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    extras: list[dict[bytes, bytes]] = [
        {}, {b"start_to_close_ms": b"60000", b"heartbeat_ms": b"0"},
        {b"start_to_close_ms": b""}, {b"schedule_to_start_ms": b"0"},  # later
        {b"start_to_close_ms": b"100"}, {b"heartbeat_ms": b"199"},
        {b"schedule_to_start_ms": b"5000"},  # at once
    ]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            activities.start([TaskEntry(stream, f"{i}-0", {**fields("holds"), **extra})
                              for i, extra in enumerate(extras)])
            marks = [r.mark_at for r in activities.running.values()]
            release.set()
            while activities.running:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    at_once = min(marks)
    assert [m == at_once for m in marks] == [False] * 4 + [True] * 3
