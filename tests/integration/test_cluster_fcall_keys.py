"""The cold path's FCALLs on a Redis Cluster are routed by their keys in the client:
no `COMMAND GETKEYS` to a node first (redis-py asks one before every FCALL: one more
round trip and server call each; engine/cluster_redis.py). The worker's schedule scan
is one such FCALL per shard, several times a second per fleet. Runs when
REDURABLE_TEST_CLUSTER_URL names a node of a cluster, else skips."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from engine.cluster_redis import as_cluster
from engine.schedules import ScheduleStore
from sdk import Client
from sdk.examples.order import Order
from tests.integration.test_cluster_mode import cluster_client, cluster_url

__all__ = ["cluster_client", "cluster_url"]

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _getkeys_calls(client: Client) -> int:
    """COMMAND GETKEYS calls so far, summed over the primaries."""
    cluster = as_cluster(client.redis)
    assert cluster is not None
    total = 0
    for node in cluster.get_primaries():
        async with Redis(host=node.host, port=int(node.port), decode_responses=True) as r:
            stats: Any = await r.info("commandstats")
        total += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
    return total


async def test_the_schedule_scan_sends_no_command_getkeys(cluster_client: Client) -> None:
    schedules = ScheduleStore(cluster_client.store)
    before = await _getkeys_calls(cluster_client)
    for _ in range(3):
        due = await schedules.due(100)
        assert len(due) == cluster_client.keys.shards
    assert await _getkeys_calls(cluster_client) - before == 0


async def test_client_calls_send_no_command_getkeys(cluster_client: Client) -> None:
    queue = "q-" + uuid.uuid4().hex[:6]
    before = await _getkeys_calls(cluster_client)
    for n in range(5):
        handle = await cluster_client.start_workflow(Order.run, args=[n, 1.0],
                                                     id=f"order-{queue}-{n}", task_queue=queue)
        await handle.describe()
        await handle.terminate("done")
    assert await _getkeys_calls(cluster_client) - before == 0
