"""An activity completion answered "not now" in its slot of a pipelined batch (BUSY: a
script past its time limit holds the server; redis-py, without the fast path, leaves
error replies in their slots) was logged as failed and its task let go: the result was
lost and the activity ran again once its entry went idle. It is now kept and sent again
(sdk/worker/activity_tasks.py `flush_completions`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ResponseError

from engine.calls import Call, TaskRef
from sdk import Client, Worker, activity

pytestmark = pytest.mark.anyio

BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."


@activity.defn
async def instant() -> None:
    return None


async def test_a_completion_answered_busy_is_kept_and_its_task_held(fake_client: Client) -> None:
    worker = Worker(fake_client, task_queue="q", activities=[instant], handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    task = TaskRef(plumbing.activity_streams[0], "1-0")
    plumbing.hold(task)
    busy, done = Call("rd_act_complete", ["k"], [], task=task), Call("rd_act_complete", ["k"], [])
    sent: list[list[Call]] = []

    async def call_many(calls: Sequence[Call]) -> list[Any]:
        sent.append(list(calls))
        return [ResponseError(BUSY) if c is busy else [b"ok"] for c in calls]

    fake_client.store.call_many = call_many  # type: ignore[method-assign]
    activities.completions = [busy, done]
    with pytest.raises(ResponseError, match=r"^BUSY "):  # worker._guard pauses, then again
        await activities.flush_completions()
    assert sent == [[busy, done]]
    assert activities.completions == [busy]
    assert plumbing.holds(task)
