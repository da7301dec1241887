"""Visibility on a 3-master Redis Cluster (scripts/cluster.py): rd_start indexes the
search attributes in the workflow's shard (one hash slot), and a query runs per shard on
whichever master holds it, the answers merged. Until the Client speaks cluster mode
(the cluster issue), the test drives the engine with redis-py's RedisCluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from engine import visibility
from engine.functions import function_name, library_source
from engine.keys import Keys
from engine.search_attributes import to_wire
from engine.visibility_query import parse
from scripts.chaos.server import redis_server_binary
from scripts.cluster import LocalCluster, free_cluster_ports

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(redis_server_binary() is None, reason="needs Debian's redis-server"),
]


async def test_queries_run_per_shard_across_masters(tmp_path: Path) -> None:
    with LocalCluster(free_cluster_ports(3), workdir=tmp_path) as cluster:
        client = RedisCluster.from_url(cluster.url)
        try:
            await client.initialize()
            for node in client.get_primaries():
                with redis.Redis(host=node.host, port=int(node.port)) as primary:
                    primary.function_load(library_source(), replace=True)
            keys = Keys("vis", 12)
            for i in range(30):
                wid = f"order-{i}"
                attributes = json.dumps(to_wire({"Amount": i, "Customer": f"c-{i % 3}"}))
                reply = await client.fcall(
                    function_name("rd_start"), 3, keys.workflow(wid), keys.history(wid),
                    keys.buffer(wid), keys.shard_prefix(keys.shard(wid)), wid, f"run-{i}",
                    "Order", "q", b"", 1, "", "", "", "", attributes)
                assert reply[0] == b"ok"
            masters = {getattr(client.get_node_from_key(keys.index_start(s)), "port", None)
                       for s in range(12)}
            assert len(masters) == 3
            found = await visibility.search(client, keys, parse(
                "Customer = 'c-1' AND Amount >= 10 ORDER BY StartTime ASC"))
            assert [wid for _, wid in found] == [f"order-{i}" for i in range(10, 30, 3)]
            assert await visibility.count(client, keys, parse(
                "Amount BETWEEN 5 AND 14 OR Customer IN ('c-0')")) == 17
        finally:
            await client.aclose()
