"""Scenario: hash slots migrated between the masters of a Redis Cluster mid-run.

A private 3-master cluster (scripts/cluster.py) runs Storm workflows on a pool of
worker processes while a client starts them. Every `move_every` seconds, while
workflows are open, one of the namespace's shard slots (each history shard is one
slot: scripts/chaos/cluster_faults.py) is migrated to the next master by the real
`redis-cli --cluster reshard` (IMPORTING/MIGRATING, MIGRATE ... KEYS 10 at a time,
SETSLOT NODE), or the same steps by script (`mover`). During a migration a client
meets ASK (a key already moved), TRYAGAIN (a multi-key Function call whose keys are
split between the two nodes, one that would create a key, and every Function call on
the slot: engine/lua/00_common.lua `slot_moving`) and, after it, MOVED; blocked stream
reads on the slot are redirected.
Nobody tells the clients or workers. Then the checker (scripts/chaos/checker.py) reads
every history: nothing may be lost or wrong, since no node died.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from scripts.chaos import checker, cluster_faults, ledger
from scripts.chaos.common import (
    Started,
    StormLoad,
    WorkerPool,
    open_count,
    start_storms,
    unique_prefix,
    wait_closed,
)
from scripts.cluster import LocalCluster, free_cluster_ports
from sdk import Client


@dataclass(frozen=True)
class ClusterReshardConfig(StormLoad):
    #: 3 ports (masters; the bus uses port + 10000); empty: free ones.
    ports: tuple[int, ...] = ()
    move_every: float = 1.0
    #: How a slot moves: "redis-cli" runs the real `redis-cli --cluster reshard` (key
    #: by key, 10 per MIGRATE, taking every lower slot of the source with it);
    #: "keys" moves `batch` keys per MIGRATE, `batch_pause` s apart, the same way but
    #: that slot only; "whole" moves it in one MIGRATE (cluster_faults.py).
    mover: str = "redis-cli"
    batch: int = 10
    batch_pause: float = 0.0
    #: Pause between two starts (s): starts go on while slots move.
    start_pause: float = 0.005
    #: Moves go on while workflows are open and until at least `min_moves` happened.
    min_moves: int = 4
    drain: float = 300.0


@dataclass
class ReshardReport:
    config: ClusterReshardConfig
    verdict: checker.Verdict
    moves: int = 0
    keys_moved: int = 0
    #: Longest single slot migration (s).
    longest_move: float = 0.0
    start_errors: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.moves >= self.config.min_moves

    def line(self) -> str:
        return (
            f"{self.verdict.summary()}; {self.moves} slot migrations ({self.keys_moved} "
            f"keys moved, longest {self.longest_move:.1f} s), {self.start_errors} start "
            f"calls failed (retried); {self.seconds:.0f} s"
        )


async def run(cfg: ClusterReshardConfig, workdir: Path) -> ReshardReport:
    ports = list(cfg.ports) or free_cluster_ports(3)
    cluster = LocalCluster(ports, workdir=workdir / "cluster")
    await anyio.to_thread.run_sync(cluster.start)
    prefix = unique_prefix("reshard")
    db = ledger.create(workdir / f"{prefix}.sqlite")
    started = Started()
    report = ReshardReport(cfg, checker.Verdict())
    began = time.monotonic()
    client: Client | None = None
    try:
        client = await Client.connect(cluster.url, prefix=prefix)
        slots = cluster_faults.shard_slots(client.keys)
        with (workdir / f"{prefix}.log").open("ab") as log:
            pool = WorkerPool(cluster.url, prefix, ledger_path=db, liveness=cfg.liveness,
                              log=log)
            try:
                await pool.start(cfg.workers)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: start_storms(
                        client, cfg.workflows, started, cfg.delay, cfg.timer,
                        pause=cfg.start_pause, retry_errors=True))
                    while time.monotonic() - began < cfg.chaos_max:
                        await anyio.sleep(cfg.move_every)
                        if (len(started.expected) == cfg.workflows
                                and report.moves >= cfg.min_moves
                                and not await open_count(client, list(started.expected))):
                            break
                        await _move_one(cluster, slots, report)
                    tg.cancel_scope.cancel()
                await wait_closed(client, list(started.expected), cfg.drain)
                report.seconds = time.monotonic() - began
                report.start_errors = started.start_errors
            finally:
                pool.close()
        report.verdict = await checker.check(
            client.redis, client.keys, client.codec, started.expected, ledger=db,
            maybe_started=started.maybe)
        return report
    finally:
        with anyio.CancelScope(shield=True):  # the cluster goes with the namespace
            try:
                if client is not None:
                    await client.close()
            finally:
                await anyio.to_thread.run_sync(cluster.stop)


async def _move_one(cluster: LocalCluster, slots: list[int], report: ReshardReport) -> None:
    """The next shard slot, in turn, to the master after the one serving it."""
    cfg = report.config
    slot = slots[report.moves % len(slots)]
    masters = cluster.masters()
    owner = await anyio.to_thread.run_sync(cluster_faults.slot_owner, masters[0], slot)
    target = masters[(masters.index(owner) + 1) % len(masters)] if owner else masters[0]
    began = time.monotonic()
    if cfg.mover == "redis-cli":
        moved = await anyio.to_thread.run_sync(
            cluster_faults.reshard_with_redis_cli, cluster, slot, target)
    else:
        batch = cfg.batch if cfg.mover == "keys" else 0
        moved = await anyio.to_thread.run_sync(
            lambda: cluster_faults.migrate_slot(cluster, slot, target, batch=batch,
                                                pause=cfg.batch_pause))
    report.keys_moved += moved
    report.longest_move = max(report.longest_move, time.monotonic() - began)
    report.moves += 1
