"""Scenario: a master of a Redis Cluster SIGKILLed mid-run and its replica promoted.

A private 3-master cluster with a replica each (scripts/cluster.py, node timeout 2 s)
runs Storm workflows (scripts/chaos/workflows.py) on a pool of worker processes while
a client starts them. After `kill_after` seconds the master serving most of the
namespace's shards loses its replica's link (kept down: a partition) and, `link_down_for`
seconds later, is SIGKILLed (its host gone); the cluster's own failover promotes the
replica once the other masters have marked the master failed. Nobody tells the
clients or workers: they meet refused connections, refresh their slot map and follow
the new master. Once the replica is promoted the old master is started again and
rejoins as the new master's replica. The run goes on until every workflow closed (or
`drain` passed), then the checker (scripts/chaos/checker.py) reads every history.

Replication is asynchronous: a transition the old master applied and acknowledged may
not have reached its replica when it died (during the partition, none does). Just
before the kill the runner notes every
history's length (XLEN); after the promotion a shorter history is a rollback of events
the old master had applied (`events rolled back`). Without a durability mode those may
include acknowledged ones; with `durability="replicas:1"` every transition of the
client and the workers WAITs, in the same round trip, until a replica has it, so an
acknowledged one cannot be rolled back (what is rolled back then was applied and not
yet confirmed to anyone). A rolled-back transition whose task entry was rolled back
with it runs again; the checker's verdict says whether every workflow still completed
exactly once with the right result, and counts acknowledged starts that were lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from scripts.chaos import checker, cluster_faults, ledger
from scripts.chaos.common import (
    Started,
    StormLoad,
    WorkerPool,
    start_storms,
    unique_prefix,
    wait_closed,
)
from scripts.chaos.redis_crash import history_lengths
from scripts.cluster import LocalCluster, free_cluster_ports
from sdk import Client


@dataclass(frozen=True)
class ClusterFailoverConfig(StormLoad):
    #: 6 ports (3 masters, 3 replicas; the bus uses port + 10000); empty: free ones.
    ports: tuple[int, ...] = ()
    #: Seconds of load before the kill.
    kill_after: float = 5.0
    #: Pause between two starts (s): starts still going on when the master dies.
    start_pause: float = 0.005
    modes: tuple[str | None, ...] = (None, "replicas:1")
    #: Seconds the replica's link is down before the kill (a partition, then the host
    #: gone): what the master applies meanwhile is on no replica. 0: the link is up to
    #: the end, and on loopback a SIGKILL then loses next to nothing in flight.
    link_down_for: float = 0.3
    #: How long the run waits for the last workflows after the starts (s): a workflow
    #: still open by then is reported (every other one closes within seconds here).
    drain: float = 60.0


@dataclass
class ModeReport:
    durability: str | None
    verdict: checker.Verdict = field(default_factory=checker.Verdict)
    victim: int = 0
    #: From the kill until the replica served the slots (cluster_state ok everywhere).
    failover_seconds: float = 0.0
    #: From the restart of the old master until it was an in-sync replica.
    rejoin_seconds: float = 0.0
    #: Whether the replica's link to the master was down at the kill.
    link_was_down: bool = False
    events_rolled_back: int = 0
    histories_rolled_back: int = 0
    start_errors: int = 0
    #: Worker transitions applied whose durability wait fell short (logged).
    unconfirmed_worker_calls: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        mode = f"durability={self.durability!r}" if self.durability else "no durability"
        return (
            f"{mode}: {self.verdict.summary()}; master {self.victim} killed "
            f"(replica link {'down' if self.link_was_down else 'up'}), replica "
            f"promoted in {self.failover_seconds:.1f} s, old master back as a replica "
            f"{self.rejoin_seconds:.1f} s later; {self.events_rolled_back} events in "
            f"{self.histories_rolled_back} histories rolled back by the failover; "
            f"{self.start_errors} start calls failed (retried), "
            f"{self.unconfirmed_worker_calls} worker transitions not confirmed durable; "
            f"{self.seconds:.0f} s"
        )


@dataclass
class ClusterFailoverReport:
    config: ClusterFailoverConfig
    modes: list[ModeReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # No workflow may end wrong or stay open in any mode. A lost acknowledged start
        # is measured without a durability mode, and must not happen with one.
        return all(not m.verdict.problems and (m.durability is None or not m.verdict.lost)
                   for m in self.modes) and len(self.modes) == len(self.config.modes)

    def line(self) -> str:
        cfg = self.config
        return (f"{cfg.workflows} workflows per mode, {cfg.workers} workers, 3 masters + "
                f"3 replicas, node timeout 2 s, the busiest master SIGKILLed after "
                f"{cfg.kill_after:g} s, its replica's link down for the last "
                f"{cfg.link_down_for:g} s: " + "; ".join(m.line() for m in self.modes))


async def run_mode(cfg: ClusterFailoverConfig, durability: str | None,
                   workdir: Path) -> ModeReport:
    report = ModeReport(durability)
    ports = list(cfg.ports) or free_cluster_ports(6)
    cluster = LocalCluster(ports, replicas=1, workdir=workdir / "cluster")
    await anyio.to_thread.run_sync(cluster.start)
    prefix = unique_prefix("clfail")
    db = ledger.create(workdir / f"{prefix}.sqlite")
    started = Started()
    began = time.monotonic()
    client: Client | None = None
    try:
        client = await Client.connect(cluster.url, prefix=prefix, durability=durability)
        log_path = workdir / f"{prefix}.log"
        with log_path.open("ab") as log:
            pool = WorkerPool(cluster.url, prefix, ledger_path=db, liveness=cfg.liveness,
                              log=log, durability=durability)
            try:
                await pool.start(cfg.workers)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: start_storms(
                        client, cfg.workflows, started, cfg.delay, cfg.timer,
                        pause=cfg.start_pause, retry_errors=True))
                    await anyio.sleep(cfg.kill_after)
                    await _fail_over(cfg, cluster, client, started, report)
                    while len(started.expected) < cfg.workflows:
                        await anyio.sleep(0.2)
                await wait_closed(client, list(started.expected), cfg.drain)
                report.seconds = time.monotonic() - began
                report.start_errors = started.start_errors
            finally:
                pool.close()
        report.unconfirmed_worker_calls = log_path.read_text(errors="replace").count(
            "durability_not_confirmed")
        report.verdict = await checker.check(
            client.redis, client.keys, client.codec, started.expected, ledger=db,
            maybe_started=started.maybe)
        return report
    finally:
        # No namespace to clear: the cluster goes with it.
        with anyio.CancelScope(shield=True):
            try:
                if client is not None:
                    await client.close()
            finally:
                await anyio.to_thread.run_sync(cluster.stop)


async def _fail_over(cfg: ClusterFailoverConfig, cluster: LocalCluster, client: Client,
                     started: Started, report: ModeReport) -> None:
    slots = cluster_faults.shard_slots(client.keys)
    report.victim = await anyio.to_thread.run_sync(cluster_faults.busiest_master,
                                                   cluster, slots)
    replica = await anyio.to_thread.run_sync(cluster_faults.replica_of, cluster,
                                             report.victim)
    if cfg.link_down_for > 0:
        await anyio.to_thread.run_sync(cluster_faults.cut_replica_link, replica)
        await anyio.sleep(cfg.link_down_for)
    ids = list(started.expected)
    before = await history_lengths(client, ids)
    report.link_was_down = not await anyio.to_thread.run_sync(cluster_faults.link_up,
                                                              replica)
    try:
        report.failover_seconds = await anyio.to_thread.run_sync(
            cluster_faults.kill_and_fail_over, cluster, report.victim, replica)
    finally:
        await anyio.to_thread.run_sync(cluster_faults.restore_replica_link, replica)
    after = await history_lengths(client, ids)
    lost = [b - a for b, a in zip(before, after, strict=True) if b > a]
    report.events_rolled_back = sum(lost)
    report.histories_rolled_back = len(lost)
    report.rejoin_seconds = await anyio.to_thread.run_sync(
        cluster_faults.rejoin, cluster, report.victim)


async def run(cfg: ClusterFailoverConfig, workdir: Path) -> ClusterFailoverReport:
    report = ClusterFailoverReport(cfg)
    for durability in cfg.modes:
        report.modes.append(
            await run_mode(cfg, durability, workdir / f"clfail-{durability or 'none'}"))
    return report
