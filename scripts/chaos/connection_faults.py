"""Scenario 3, connection faults, on a private redis-server (never the shared 6379):

- CLIENT KILL of random worker and client connections during load, including
  connections blocked in XREADGROUP and connections running a transition (FCALL);
- every worker and the client talk to Redis through a CuttingProxy (proxy.py) that now
  and then forwards a command and cuts the connection before its reply: the write
  happened, the caller cannot know.

Then the faults stop, and within `stuck_after` seconds every workflow must have closed
and no task entry may be left pending (a consumer stuck on a task it lost track of
would hold it for ever); the checker then finds no duplicate event and the right result
everywhere.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from engine.keys import GROUP, Keys
from scripts.chaos import checker, ledger
from scripts.chaos.common import (
    TASK_QUEUE,
    Started,
    StormLoad,
    WorkerPool,
    drop_client,
    open_count,
    start_storms,
    unique_prefix,
    wait_closed,
)
from scripts.chaos.proxy import CuttingProxy
from scripts.chaos.server import PrivateRedis
from sdk import Client

ADMIN_NAME = "chaos-admin"


@dataclass(frozen=True)
class FaultConfig(StormLoad):
    workflows: int = 300
    workers: int = 3
    #: Pause between two CLIENT KILLs (s).
    kill_every: float = 0.05
    #: Share of client->server chunks after which the proxy cuts the connection.
    cut_rate: float = 0.005
    seed: int = 1
    chaos_max: float = 600.0
    #: Once faults stop, everything must be closed and acknowledged within this (s).
    stuck_after: float = 60.0


@dataclass
class FaultReport:
    config: FaultConfig
    verdict: checker.Verdict
    #: CLIENT KILLs by the command the connection was running (`xreadgroup`, `fcall`...).
    kills: Counter[str] = field(default_factory=Counter)
    cuts: int = 0
    cuts_after_fcall: int = 0
    start_errors: int = 0
    open_after_faults: int = 0
    #: Workflows still open, and task entries still pending, `stuck_after` s later.
    stuck_workflows: int = 0
    stuck_entries: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        kills = ", ".join(f"{n} {cmd}" for cmd, n in self.kills.most_common(4))
        return (
            f"{self.verdict.summary()}; {sum(self.kills.values())} CLIENT KILLs ({kills}), "
            f"{self.cuts} replies cut by the proxy ({self.cuts_after_fcall} after an "
            f"FCALL), {self.start_errors} start calls failed (retried); "
            f"{self.stuck_workflows} workflows and {self.stuck_entries} task entries "
            f"stuck {self.config.stuck_after:g} s after the faults stopped"
        )


async def pending_entries(redis: Redis, keys: Keys) -> int:
    """Task entries delivered to some worker and not acknowledged yet."""
    total = 0
    for shard in range(keys.shards):
        for stream in (keys.workflow_tasks(shard, TASK_QUEUE),
                       keys.activity_tasks(shard, TASK_QUEUE)):
            summary: Any = await redis.xpending(stream, GROUP)
            total += int(summary["pending"])
    return total


async def _kill_connections(admin: Redis, cfg: FaultConfig, report: FaultReport,
                            stop: anyio.Event) -> None:
    rng = random.Random(cfg.seed)
    while not stop.is_set():
        await anyio.sleep(cfg.kill_every)
        clients: Any = await admin.client_list()
        victims = [c for c in clients if c.get("name") != ADMIN_NAME]
        if not victims:
            continue
        # Half the time aim at the interesting moments: blocked reads, transitions.
        busy = [c for c in victims if c.get("cmd") in ("xreadgroup", "fcall")]
        victim = rng.choice(busy if busy and rng.random() < 0.5 else victims)
        if await admin.client_kill_filter(_id=victim["id"]):
            report.kills[victim.get("cmd", "?")] += 1


async def run(cfg: FaultConfig, workdir: Path) -> FaultReport:
    prefix = unique_prefix("faults")
    server = PrivateRedis(workdir / f"{prefix}-redis", appendfsync="no").start()
    proxy = await CuttingProxy(server.port, cut_rate=cfg.cut_rate, seed=cfg.seed).start()
    admin = Redis(host="127.0.0.1", port=server.port, client_name=ADMIN_NAME)
    db = ledger.create(workdir / f"{prefix}.sqlite")
    report = FaultReport(cfg, checker.Verdict())
    started = Started()
    began = time.monotonic()
    client: Client | None = None
    try:
        # The client connects before the faults start: Client.connect itself does not
        # retry (a user sees a clear error at once), everything after it must.
        proxy.cutting = False
        client = await Client.connect(proxy.url, prefix=prefix)
        proxy.cutting = True
        with (workdir / f"{prefix}.log").open("ab") as log:
            pool = WorkerPool(proxy.url, prefix, ledger_path=db, liveness=cfg.liveness,
                              log=log)
            try:
                proxy.cutting = False  # workers start up cleanly, then the faults begin
                await pool.start(cfg.workers)
                proxy.cutting = True
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_kill_connections, admin, cfg, report, stop)
                    await start_storms(client, cfg.workflows, started, cfg.delay, cfg.timer,
                                       retry_errors=True)
                    await wait_closed(client, list(started.expected),
                                      cfg.chaos_max - (time.monotonic() - began), admin)
                    stop.set()
                proxy.cutting = False
                report.cuts = proxy.stats.cuts
                report.cuts_after_fcall = proxy.stats.cuts_after_fcall
                report.start_errors = started.start_errors
                report.open_after_faults = await open_count(client, list(started.expected), admin)
                deadline = time.monotonic() + cfg.stuck_after
                await wait_closed(client, list(started.expected), cfg.stuck_after, admin)
                while time.monotonic() < deadline and await pending_entries(admin, client.keys):
                    await anyio.sleep(0.2)
                report.stuck_workflows = await open_count(client, list(started.expected), admin)
                report.stuck_entries = await pending_entries(admin, client.keys)
                report.seconds = time.monotonic() - began
            finally:
                pool.close()
        report.verdict = await checker.check(
            admin, client.keys, client.codec, started.expected, ledger=db,
            maybe_started=started.maybe)
        return report
    finally:
        with anyio.CancelScope(shield=True):
            if client is not None:
                await drop_client(client, prefix, admin)
            await admin.aclose()
            await proxy.close()
            server.close()
