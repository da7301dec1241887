"""Scenario 1, worker kill storm: 4 worker processes, a random one SIGKILLed every
200 ms and replaced at once, while Storm workflows (5 activities, 2 timers) run.

Recovery time is measured as in scripts/recovery.py: after each kill, the workflows with
a task pending on the victim are in flight on it; each one's recovery is from the kill
to the first history event written after it (stream ids are the server clock, so it is
read afterwards, exactly). Kills only hit workers that have joined the queue: one
killed while importing would test nothing.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from scripts.chaos import checker, ledger
from scripts.chaos.common import (
    TASK_QUEUE,
    Started,
    StormLoad,
    WorkerPool,
    drop_client,
    open_count,
    percentile,
    server_ms,
    start_storms,
    unique_prefix,
    wait_closed,
)
from scripts.recovery import first_event_after, in_flight_on
from sdk import Client


@dataclass(frozen=True)
class StormConfig(StormLoad):
    kill_every: float = 0.2
    seed: int = 1
    #: The storm goes on until every workflow closed and at least this many kills (and
    #: at most chaos_max seconds).
    min_kills: int = 0
    #: Then, with no more kills, the rest must finish within this (s).
    drain: float = 120.0


@dataclass
class StormReport:
    config: StormConfig
    verdict: checker.Verdict
    kills: int = 0
    #: Recovery time (ms) of each workflow that was in flight on a killed worker.
    recovery_ms: list[int] = field(default_factory=list)
    #: In flight on a victim and made no progress at all by the end.
    unrecovered: int = 0
    open_after_storm: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"{self.verdict.summary()}; {self.kills} kills in {self.seconds:.0f} s, "
            f"{len(self.recovery_ms)} workflows in flight on a victim, recovery p50 "
            f"{percentile(self.recovery_ms, 0.5) / 1000:.2f} s, p99 "
            f"{percentile(self.recovery_ms, 0.99) / 1000:.2f} s, "
            f"max {max(self.recovery_ms, default=0) / 1000:.2f} s, "
            f"{self.unrecovered} never recovered"
        )


async def run(url: str, cfg: StormConfig, workdir: Path) -> StormReport:
    rng = random.Random(cfg.seed)
    prefix = unique_prefix("storm")
    db = ledger.create(workdir / f"{prefix}.sqlite")
    client = await Client.connect(url, prefix=prefix)
    kills: list[tuple[int, set[str]]] = []
    started = Started()
    began = time.monotonic()
    with (workdir / f"{prefix}.log").open("ab") as log:
        pool = WorkerPool(url, prefix, ledger_path=db, liveness=cfg.liveness, log=log)
        try:
            await pool.start(cfg.workers)
            async with anyio.create_task_group() as tg:
                tg.start_soon(start_storms, client, cfg.workflows, started, cfg.delay,
                              cfg.timer)
                next_look = 0.0
                while time.monotonic() - began < cfg.chaos_max:
                    await anyio.sleep(cfg.kill_every)
                    if time.monotonic() >= next_look:  # every second: cheap enough
                        next_look = time.monotonic() + 1.0
                        done_starting = len(started.expected) + started.start_errors
                        if (done_starting == cfg.workflows and pool.kills >= cfg.min_kills
                                and not await open_count(client, list(started.expected))):
                            break
                    ready = await pool.ready(client)
                    if not ready:
                        continue
                    victim = rng.choice(ready)
                    pool.kill(victim)
                    killed_at = await server_ms(client)
                    kills.append((killed_at, await in_flight_on(client, victim.identity,
                                                                TASK_QUEUE)))
                tg.cancel_scope.cancel()  # a start loop cut short by chaos_max
            report = StormReport(cfg, checker.Verdict(), kills=pool.kills)
            report.open_after_storm = await open_count(client, list(started.expected))
            await wait_closed(client, list(started.expected), cfg.drain)
            report.seconds = time.monotonic() - began
            for killed_at, ids in kills:
                for wf_id in sorted(ids):
                    at = await first_event_after(client, wf_id, killed_at)
                    if at is None:
                        report.unrecovered += 1
                    else:
                        report.recovery_ms.append(at - killed_at)
            pool.close()
            report.verdict = await checker.check(
                client.redis, client.keys, client.codec, started.expected, ledger=db,
                maybe_started=started.maybe)
            return report
        finally:
            pool.close()
            await drop_client(client, prefix)
