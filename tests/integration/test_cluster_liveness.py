"""A worker's clock on a Redis Cluster (sdk/worker/liveness.py): the offset between its
clock and the server's is measured on the master holding the task queue's beats, so
every worker of the queue compares beats on one clock (a keyless TIME goes to any
node, and nodes' clocks differ by what NTP leaves between hosts). Runs when
REDURABLE_TEST_CLUSTER_URL names a node of a cluster, else skips."""

from __future__ import annotations

import anyio
import pytest

from engine.cluster_redis import ClusterRedis
from sdk import Client
from sdk.testing import running_worker
from tests.integration.chaos_workflows import Counter
from tests.integration.test_cluster_mode import cluster_client, cluster_url

__all__ = ["cluster_client", "cluster_url"]

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.mark.timeout(60)
async def test_the_beat_reads_the_clock_of_the_master_holding_the_beats(
    cluster_client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str | None] = []
    node_client = ClusterRedis.node_client

    def spy(self: ClusterRedis, key: str | None = None) -> object:
        asked.append(key)
        return node_client(self, key)

    monkeypatch.setattr(ClusterRedis, "node_client", spy)
    beats = cluster_client.keys.workers("clock")
    async with running_worker(cluster_client, task_queue="clock", workflows=[Counter]):
        # Until the worker's first beat: a worker stopped before its start-up ends does
        # not start at all (sdk/worker/startup.py), so the block must not end first.
        with anyio.fail_after(30):
            while beats not in asked:
                await anyio.sleep(0.01)
    assert beats in asked
