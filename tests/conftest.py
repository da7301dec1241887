"""Fixtures: a Client on fakeredis (fast unit tests) and on a real server: the
machine's Redis when REDURABLE_TEST_URL is set, else an embedded Valkey."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import cast

import fakeredis
import pytest
import redis
from redis.asyncio import Redis
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ResponseError

from engine.functions import load_library
from sdk import Client
from sdk._devserver import EmbeddedServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDURABLE_TEST_URL")
    if url:
        yield url
        return
    with EmbeddedServer() as server:
        yield server.url


@functools.cache
def _is_cluster(url: str) -> bool:
    with redis.Redis.from_url(url) as probe:
        try:
            probe.execute_command("CLUSTER", "INFO")
        except ResponseError:
            return False
    return True


def sync_redis(url: str) -> redis.Redis:
    """A synchronous client for a test's own reads, writes and clean-up: redis-py's
    RedisCluster when `url` is a node of a cluster (REDURABLE_TEST_URL in .ci/run's
    cluster pass), else a plain client."""
    if _is_cluster(url):
        return cast(redis.Redis, SyncRedisCluster.from_url(url))
    return redis.Redis.from_url(url)


def async_redis(url: str) -> Redis:
    """sync_redis's asynchronous twin."""
    if _is_cluster(url):
        from redis.asyncio.cluster import RedisCluster
        return cast(Redis, RedisCluster.from_url(url))
    return Redis.from_url(url)


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


async def _delete_prefix(redis: Redis, prefix: str) -> None:
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        await redis.delete(key)


@pytest.fixture
async def real_client(redis_url: str) -> AsyncIterator[Client]:
    prefix = unique_prefix()
    client = await Client.connect(redis_url, prefix=prefix)
    try:
        yield client
    finally:
        await _delete_prefix(client.redis, prefix)
        await client.close()


@pytest.fixture
async def fake_client() -> AsyncIterator[Client]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await load_library(redis)
    client = Client(redis, prefix=unique_prefix())
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(params=["fake", "real"])
async def client(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Client]:
    """Runs the test twice: on fakeredis and on a real server."""
    if request.param == "fake":
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        await load_library(redis)
        c = Client(redis, prefix=unique_prefix())
        try:
            yield c
        finally:
            await c.close()
    else:
        prefix = unique_prefix()
        c = await Client.connect(redis_url, prefix=prefix)
        try:
            yield c
        finally:
            await _delete_prefix(c.redis, prefix)
            await c.close()
