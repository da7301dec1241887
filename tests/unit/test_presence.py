"""Dead-worker detection by presence subscription (sdk/_presence.py), on fakeredis."""

from __future__ import annotations

import json

import anyio
import fakeredis
import pytest
from redis.asyncio import Redis

from engine.keys import Keys
from sdk import _presence
from sdk._presence import DeathWatch, PresenceHolder

pytestmark = pytest.mark.anyio

QUEUE = "q"


async def register(redis: Redis, keys: Keys, worker: str, presence: bool) -> None:
    await redis.zadd(keys.workers(QUEUE), {worker: 1})
    await redis.hset(keys.worker_info(QUEUE), worker, json.dumps({"presence": presence}))


@pytest.fixture
def redis() -> Redis:
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


async def test_a_worker_without_subscriber_is_dead_after_the_grace(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    keys = Keys("p", 4)
    await register(redis, keys, "alive", True)
    await register(redis, keys, "gone", True)
    await register(redis, keys, "legacy", False)  # no presence: the heartbeat decides
    holder = PresenceHolder(redis, keys, "alive")
    await holder.subscribe()
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []  # first silence starts the grace period
    await anyio.sleep(0.06)
    assert await watch.find_dead() == ["gone"]
    assert await watch.find_dead() == ["gone"]  # reported until forgotten
    await watch.forget("gone")
    assert await redis.zscore(keys.workers(QUEUE), "gone") is None
    assert await redis.hget(keys.worker_info(QUEUE), "gone") is None
    assert await watch.find_dead() == []


async def test_a_worker_that_subscribes_again_within_the_grace_lives(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    keys = Keys("p", 4)
    await register(redis, keys, "flaky", True)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []
    holder = PresenceHolder(redis, keys, "flaky")
    await holder.subscribe()
    await anyio.sleep(0.06)
    assert await watch.find_dead() == []
    await holder._close()  # the connection drops: the grace period starts over
    assert await watch.find_dead() == []


async def test_the_watcher_never_reports_itself(redis: Redis) -> None:
    keys = Keys("p", 4)
    await register(redis, keys, "me", True)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []
    await anyio.sleep(0.25)
    assert await watch.find_dead() == []
