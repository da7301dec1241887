"""The cluster client's plain clients to single nodes (engine/cluster_redis.py) hold
subscriptions that must outlive redis-py's own restarts: RedisCluster calls `aclose()`
itself after repeated MOVED replies (every `reinitialize_steps`). When that closed the
node clients too, a worker's presence subscription dropped during a slot migration and
live workers took it for dead. They close with the client (`close_redis`)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.asyncio import Redis

from engine.cluster_redis import ClusterRedis, close_redis

pytestmark = pytest.mark.anyio


class _NodeClient:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_redis_py_s_own_aclose_leaves_the_node_clients_open() -> None:
    cluster = cast(ClusterRedis, ClusterRedis.from_url("redis://127.0.0.1:1"))
    node = _NodeClient()
    cluster.__dict__["_node_clients"] = {"redis://127.0.0.1:1": node}
    await cluster.aclose()  # what RedisCluster._execute_command does after MOVEDs
    assert not node.closed
    await close_redis(cast(Redis, cluster))
    assert node.closed


async def test_close_redis_closes_a_plain_client() -> None:
    closed: list[Any] = []

    class _Plain(Redis):
        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            closed.append(self)

    plain = _Plain()
    await close_redis(plain)
    assert closed == [plain]
