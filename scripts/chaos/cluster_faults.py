"""Topology faults on a local Redis Cluster (scripts/cluster.py's LocalCluster), for
the cluster scenarios: which node serves a namespace's shards, a master killed and
failed over to its replica, a slot migrated key by key to another master.

Everything here is blocking (redis-py's sync client, subprocesses): the scenarios run
it in a thread.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from engine.keys import Keys
from engine.resp_cluster import key_slot
from scripts.cluster import LocalCluster


def shard_slots(keys: Keys) -> list[int]:
    """The hash slot of each history shard of a namespace (every key of a shard carries
    its tag, so the shard's whole state lives in that one slot)."""
    return [key_slot(keys.shard_prefix(shard) + "x") for shard in range(keys.shards)]


def _node(port: int) -> Redis:
    return Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)


def slot_owner(port: int, slot: int) -> int | None:
    """The port of the master serving `slot`, as node `port` sees it."""
    with _node(port) as node:
        for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
    return None


def busiest_master(cluster: LocalCluster, slots: list[int]) -> int:
    """The master serving the most of `slots` (the first such, by port)."""
    owners = [slot_owner(cluster.ports[0], slot) for slot in slots]
    return max(sorted({o for o in owners if o is not None}), key=owners.count)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster: {what} within {timeout:g} s")
        time.sleep(0.05)


def replica_of(cluster: LocalCluster, master: int) -> int:
    """The port of a replica of master `master`."""
    master_id = _node_id(cluster, master)
    return next(port for port, _, flags, of in cluster.nodes(master)
                if "slave" in flags and of == master_id)


def cut_replica_link(replica: int) -> None:
    """Drop a replica's link to its master and keep it down, as a network partition
    would: what the master applies meanwhile it does not get. (A dropped link alone is
    back within milliseconds: the replica reconnects at once. A wrong `masterauth`
    makes its reconnections fail at AUTH until `restore_replica_link`.)"""
    with _node(replica) as node:
        node.config_set("masterauth", "partitioned")
        node.execute_command("CLIENT", "KILL", "TYPE", "master")


def restore_replica_link(replica: int) -> None:
    with _node(replica) as node:
        node.config_set("masterauth", "")


def link_up(replica: int) -> bool:
    with _node(replica) as node:
        return bool(node.info("replication").get("master_link_status") == "up")


def kill_and_fail_over(cluster: LocalCluster, victim: int, replica: int,
                       timeout: float = 30.0) -> float:
    """SIGKILL master `victim` and wait until `replica` serves its slots and every live
    node says cluster_state:ok; returns the seconds from the kill to then."""
    killed_at = time.monotonic()
    cluster.kill(victim)
    live = [p for p in cluster.ports if p != victim]

    def promoted() -> bool:
        for port in live:
            with _node(port) as node:
                if node.cluster("INFO")["cluster_state"] != "ok":
                    return False
        return replica in cluster.masters(live[0])

    _wait(promoted, timeout, f"replica {replica} of {victim} promoted")
    return time.monotonic() - killed_at


def _node_id(cluster: LocalCluster, port: int) -> str:
    return next(node_id for p, node_id, _, _ in cluster.nodes(port) if p == port)


def rejoin(cluster: LocalCluster, port: int, timeout: float = 30.0) -> float:
    """Start a killed node again and wait until it is an in-sync replica (its link to
    its new master up); returns the seconds that took."""
    began = time.monotonic()
    cluster.restart(port)

    def in_sync() -> bool:
        with _node(port) as node:
            info = node.info("replication")
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    _wait(in_sync, timeout, f"node {port} back as an in-sync replica")
    return time.monotonic() - began


#: GETKEYSINSLOT's count when a slot moves in one MIGRATE (more than a slot holds here).
WHOLE_SLOT = 1_000_000


def migrate_slot(cluster: LocalCluster, slot: int, target: int, *, batch: int = 0,
                 pause: float = 0.0) -> int:
    """Move `slot` to master `target`: IMPORTING on the target, MIGRATING on the
    source, the keys moved with MIGRATE ... KEYS, then SETSLOT NODE on every master.
    Returns the keys moved.

    `batch` 0 moves every key of the slot in one MIGRATE (then the few created in the
    meantime); `batch` N moves N keys per MIGRATE as `redis-cli --cluster reshard` does
    (its default pipeline is 10), `pause` seconds apart, so the slot's keys stay split
    between the two nodes for a while: redurable's Functions answer TRYAGAIN until it
    has moved (engine/lua/00_common.lua `slot_moving`; docs/reliability.md)."""
    source = slot_owner(cluster.ports[0], slot)
    if source is None or source == target:
        return 0
    source_id, target_id = _node_id(cluster, source), _node_id(cluster, target)
    moved = 0
    with _node(source) as src, _node(target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while True:
            names = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot,
                                        batch or WHOLE_SLOT)
            if not names:
                break
            try:
                src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 10000,
                                    "KEYS", *names)
            except ResponseError as exc:
                if "BUSYKEY" not in str(exc):
                    raise
                # A key the target got from a client sent there with ASK while the
                # source still had it: two copies, and REPLACE would lose one of them.
                raise RuntimeError(f"slot {slot}: {exc}") from None
            moved += len(names)
            if pause:
                time.sleep(pause)
        # The target first: from then on it answers for the slot itself.
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    for port in cluster.masters():
        if port not in (source, target):
            with _node(port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


def reshard_with_redis_cli(cluster: LocalCluster, slot: int, target: int) -> int:
    """Move `slot` to master `target` with the real `redis-cli --cluster reshard`
    (key by key, 10 keys per MIGRATE: its defaults). redis-cli takes a source's lowest
    slots first, so every slot of the source up to `slot` moves with it (most are
    empty; other shards' slots among them move too). Returns the keys those slots held
    before the move (CLUSTER COUNTKEYSINSLOT)."""
    with _node(cluster.ports[0]) as node:
        ranges = node.execute_command("CLUSTER", "SLOTS")
    owners = [(int(lo), int(hi), int(primary[1])) for lo, hi, primary, *_ in ranges]
    source = next((port for lo, hi, port in owners if lo <= slot <= hi), None)
    if source is None or source == target:
        return 0
    moving = [s for lo, hi, port in owners if port == source
              for s in range(lo, hi + 1) if s <= slot]
    with _node(source) as node:
        keys = sum(int(node.execute_command("CLUSTER", "COUNTKEYSINSLOT", s))
                   for s in moving)
    done = subprocess.run(
        ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{source}",
         "--cluster-from", _node_id(cluster, source),
         "--cluster-to", _node_id(cluster, target),
         "--cluster-slots", str(len(moving)), "--cluster-yes"],
        capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or slot_owner(cluster.ports[0], slot) != target:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"redis-cli --cluster reshard of slot {slot} failed: "
                           + " | ".join(tail))
    return keys
