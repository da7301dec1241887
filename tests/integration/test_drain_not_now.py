"""A stopping worker whose last writes fail for a moment (Redis lost, or BUSY with a
script past its time limit) still hands its workflows back. Before the fix an error out
of the drain's completions flush ended `Worker.run` there: the sticky streams were not
released (their tasks waited for the schedule-to-start timeout) and the worker's exit
raised."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sdk import Client, Worker, activity, workflow

pytestmark = pytest.mark.anyio


@activity.defn
async def noop() -> None:
    return None


@workflow.defn
class Idle:
    @workflow.run
    async def run(self) -> None:
        return None


async def test_a_drain_whose_writes_fail_still_releases_the_sticky_streams(
    client: Client,
) -> None:
    released: list[str] = []
    release_sticky = client.store.release_sticky

    async def recorded(task_queue: str, sticky: Any) -> int:
        released.append(task_queue)
        return await release_sticky(task_queue, sticky)

    client.store.release_sticky = recorded  # type: ignore[method-assign]
    worker = Worker(client, task_queue="drain-q", workflows=[Idle], activities=[noop],
                    handle_signals=False)
    flushes = 0

    async def lost() -> None:
        nonlocal flushes
        flushes += 1
        raise RedisConnectionError("connection lost")

    with anyio.fail_after(30):
        async with worker:
            await anyio.sleep(0.2)
            worker._activity_tasks.flush_completions = lost  # type: ignore[method-assign]
    assert released == ["drain-q"]
    assert flushes > 1  # retried before it was given up
    assert not await client.redis.zscore(client.keys.workers("drain-q"), worker.identity)
