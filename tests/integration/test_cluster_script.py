"""scripts/cluster.py: a local 3-master Redis Cluster starts, serves every slot, and
is torn down (its processes gone, its ports free)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from scripts.chaos.server import redis_server_binary
from scripts.cluster import LocalCluster, free_cluster_ports, main, parse_ports
from sdk._devserver import port_in_use

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(redis_server_binary() is None, reason="needs Debian's redis-server"),
]


def test_three_masters_serve_every_slot_and_go_away(tmp_path: Path) -> None:
    ports = free_cluster_ports(3)
    with LocalCluster(ports, workdir=tmp_path) as cluster:
        assert cluster.ready()
        assert cluster.masters() == sorted(ports)
        client = RedisCluster.from_url(cluster.url)
        try:
            # Keys in each master's slots (shard tags as the engine uses them).
            nodes = set()
            for shard in range(12):
                key = f"redurable:{{{shard}}}:probe"
                client.set(key, shard)
                assert client.get(key) == str(shard).encode()
                nodes.add(client.get_node_from_key(key).port)  # type: ignore[no-untyped-call]
            assert nodes == set(ports)
        finally:
            client.close()
    assert not any(port_in_use(p) for p in ports)
    assert not any((tmp_path / str(p)).exists() for p in ports)


def test_with_replicas_and_from_the_command_line(tmp_path: Path) -> None:
    ports = free_cluster_ports(6)
    spec = ",".join(map(str, ports))
    assert main(["up", "--ports", spec, "--replicas", "1", "--dir", str(tmp_path)]) == 0
    try:
        assert main(["status", "--ports", spec, "--dir", str(tmp_path)]) == 0
        cluster = LocalCluster(ports, replicas=1, workdir=tmp_path)
        assert len(cluster.masters()) == 3
    finally:
        assert main(["down", "--ports", spec, "--dir", str(tmp_path)]) == 0
    assert not any(port_in_use(p) for p in ports)


def test_bad_arguments_are_clear_errors() -> None:
    assert parse_ports("7100-7102") == [7100, 7101, 7102]
    assert parse_ports("7100,7105") == [7100, 7105]
    with pytest.raises(ValueError, match="not like 7100-7105"):
        parse_ports("a-b")
    with pytest.raises(ValueError, match="need 6 ports, not 3"):
        LocalCluster([1, 2, 3], replicas=1)


def test_one_master_serves_every_slot(tmp_path: Path) -> None:
    """`redis-cli --cluster create` refuses fewer than 3 masters: the slots are assigned
    by hand (the cluster-scale benchmark's 1-master baseline)."""
    ports = free_cluster_ports(1)
    spec = str(ports[0])
    assert main(["up", "--ports", spec, "--masters", "1", "--dir", str(tmp_path)]) == 0
    try:
        cluster = LocalCluster(ports, masters=1, workdir=tmp_path)
        assert cluster.ready()
        assert cluster.masters() == ports
    finally:
        assert main(["down", "--ports", spec, "--masters", "1", "--dir", str(tmp_path)]) == 0
    assert not port_in_use(ports[0])
