"""engine/time_skipping.py on fakeredis: the library variant's clock, and when skip()
moves it (nothing in flight) and how far (the next timer, or the limit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from engine import time_skipping
from engine.functions import load_library
from engine.keys import GROUP
from sdk import Client

pytestmark = pytest.mark.anyio
HOUR_MS = 3_600_000


@pytest.fixture
async def skipping_client() -> AsyncIterator[Client]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await load_library(redis)
    client = Client(redis, prefix="ts")
    await time_skipping.load_time_skipping_library(redis, client.keys)
    try:
        yield client
    finally:
        await client.close()


async def test_functions_read_the_skipped_clock(skipping_client: Client) -> None:
    client = skipping_client
    await client.redis.set(client.keys.clock_offset(), 30 * 24 * HOUR_MS)
    now = await time_skipping.now_ms(client.redis, client.keys)
    await client.start_workflow("Anything", id="wf-1", task_queue="q")
    history = await client.get_workflow_handle("wf-1").fetch_history()
    started = history.events[0]
    started_ms = round(started.timestamp.timestamp() * 1000)
    assert now <= started_ms < now + 60_000


async def test_skip_waits_while_a_task_is_in_flight(skipping_client: Client) -> None:
    client = skipping_client
    keys, redis = client.keys, client.redis
    await client.store.ensure_groups("q")
    before = await time_skipping.now_ms(redis, keys)
    # A timer due in 5 hours (the member is never fired here).
    await redis.zadd(keys.timers(0), {"timer-member": before + 5 * HOUR_MS})
    await client.start_workflow("Anything", id="wf-2", task_queue="q")
    undelivered = await time_skipping.skip(redis, keys)
    assert undelivered.busy and undelivered.skipped_ms == 0
    stream = keys.workflow_tasks(keys.shard("wf-2"), "q")
    reply: Any = await redis.xreadgroup(GROUP, "w1", {stream: ">"}, count=10)
    running = await time_skipping.skip(redis, keys)
    assert running.busy and running.skipped_ms == 0
    await redis.xack(stream, GROUP, *[sid for sid, _ in reply[0][1]])
    # Idle: to the limit if it comes first, else to the timer and no further.
    limited = await time_skipping.skip(redis, keys, before + HOUR_MS)
    assert not limited.busy and limited.now_ms == before + HOUR_MS
    moved = await time_skipping.skip(redis, keys)
    assert moved.now_ms == before + 5 * HOUR_MS == moved.next_due_ms
    assert await time_skipping.now_ms(redis, keys) >= before + 5 * HOUR_MS
    again = await time_skipping.skip(redis, keys)
    assert again.skipped_ms == 0  # the timer is due: nothing to skip to
