"""Scenario: the primary of a Sentinel deployment SIGKILLed under load
(scripts/chaos/sentinel_group.py: a primary, 2 replicas, 3 Sentinels, quorum 2).
Client tasks, each its own `Client` on the `redis+sentinel://` URL, start and signal
workflows without pause; after `warmup` seconds the primary is killed, a replica is
promoted, and the clients go on for `after` seconds. Then every call a client was told
had succeeded is looked for in the new primary's histories.

Replication is asynchronous: a write acknowledged by the primary may not have reached
any replica when it dies, and the promoted replica never had it. With
`durability="replicas:1"` every transition waits (WAIT, in the same round trip) until a
replica has it before the client hears "ok", so an acknowledged call cannot be lost;
without it the loss is what this scenario measures. A second replica is there so that
`replicas:1` can still be met after the failover.

Reports per mode: acknowledged calls, acknowledged calls lost, calls applied whose wait
fell short (DurabilityError), duplicated (must be 0), seconds from the kill to the new
primary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from scripts.chaos.client_outage import ClientLog, check_histories, client_task
from scripts.chaos.common import clear_namespace, unique_prefix
from scripts.chaos.sentinel_group import SentinelGroup
from sdk import Client


@dataclass(frozen=True)
class FailoverConfig:
    clients: int = 8
    #: Kills (a fresh deployment each), per durability mode.
    rounds: int = 3
    warmup: float = 2.0
    after: float = 2.0
    signals_per_workflow: int = 5
    modes: tuple[str | None, ...] = (None, "replicas:1")
    #: One-way latency of the replication links (ms), through a relay that drops what
    #: it holds when the primary dies (its host gone with data not yet on the wire).
    #: 0: replicas on loopback, where a SIGKILL loses next to nothing in flight.
    link_delay_ms: float = 2.0


@dataclass
class ModeFigures:
    durability: str | None
    rounds: int = 0
    acknowledged: int = 0
    lost: int = 0
    unconfirmed: int = 0
    duplicated: int = 0
    clear_errors: int = 0
    #: Signals to a workflow whose acknowledged start was lost (WorkflowNotFoundError).
    not_found: int = 0
    other_errors: list[str] = field(default_factory=list)
    failover_seconds: list[float] = field(default_factory=list)

    def line(self) -> str:
        mode = f"durability={self.durability!r}" if self.durability else "no durability"
        slowest = max(self.failover_seconds, default=0.0)
        return (
            f"{mode}: {self.acknowledged} acknowledged calls, {self.lost} lost with the "
            f"primary, {self.unconfirmed} applied but not confirmed (DurabilityError), "
            f"{self.clear_errors} ServerUnavailableError, {self.not_found} signals to a "
            f"lost workflow, {len(self.other_errors)} other errors, {self.duplicated} "
            f"duplicated; failover in <= {slowest:.1f} s"
        )


@dataclass
class FailoverReport:
    config: FailoverConfig
    modes: list[ModeFigures] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(
            m.duplicated == 0 and not m.other_errors and m.rounds == self.config.rounds
            and (m.durability is None or m.lost == m.not_found == 0)
            for m in self.modes)

    def line(self) -> str:
        cfg = self.config
        return (f"{cfg.rounds} kills per mode, {cfg.clients} clients starting and "
                f"signalling, replication links {cfg.link_delay_ms:g} ms one way, kill "
                f"after {cfg.warmup:g} s of load: "
                + "; ".join(m.line() for m in self.modes))


async def one_round(cfg: FailoverConfig, durability: str | None, workdir: Path,
                    figures: ModeFigures) -> None:
    group = SentinelGroup(workdir, replicas=2, sentinels=3, link_delay_ms=cfg.link_delay_ms)
    await anyio.to_thread.run_sync(group.start)
    prefix = unique_prefix("failover")
    clients: list[Client] = []
    logs = [ClientLog(short_retry=False) for _ in range(cfg.clients)]
    try:
        for _ in range(cfg.clients):
            clients.append(await Client.connect(group.url, prefix=prefix,
                                                durability=durability))
        stop = anyio.Event()

        async def load(i: int) -> None:
            await client_task(clients[i], cfg.signals_per_workflow, i, logs[i], stop)

        async with anyio.create_task_group() as tg:
            for i in range(cfg.clients):
                tg.start_soon(load, i)
            await anyio.sleep(cfg.warmup)
            killed_at = time.monotonic()
            old = await anyio.to_thread.run_sync(group.kill_primary)
            await anyio.to_thread.run_sync(group.wait_failover, old)
            figures.failover_seconds.append(time.monotonic() - killed_at)
            await anyio.sleep(cfg.after)
            stop.set()
        duplicated, lost = await check_histories(clients[0], logs)
        figures.rounds += 1
        figures.duplicated += duplicated
        figures.lost += lost
        for log in logs:
            figures.acknowledged += len(log.started) + len(log.signals_ok)
            figures.unconfirmed += log.unconfirmed
            figures.clear_errors += log.clear_errors
            figures.not_found += log.not_found
            figures.other_errors += log.other_errors
        await clear_namespace(clients[0].redis, prefix)
    finally:
        with anyio.CancelScope(shield=True):
            for client in clients:
                await client.close()
            group.close()


async def run(cfg: FailoverConfig, workdir: Path) -> FailoverReport:
    report = FailoverReport(cfg)
    for durability in cfg.modes:
        figures = ModeFigures(durability)
        for n in range(cfg.rounds):
            await one_round(cfg, durability, workdir / f"{durability or 'none'}-{n}", figures)
        report.modes.append(figures)
    return report
