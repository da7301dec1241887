"""Scenario 2, Redis crash: a private redis-server with an append-only file is
SIGKILLed every `crash_every` seconds and restarted from its AOF, while worker
processes and a client run Storm workflows. Nobody is told about the crash: workers and
the client must reconnect on their own.

With `appendfsync always` the server fsyncs every write before it replies, so nothing
a client or worker was told happened may be lost: the checker must find every
acknowledged start completed right. With `everysec` up to a second of acknowledged
writes can vanish; the scenario measures how much, and shows how it is detected:
- just before each crash the runner notes every history's length (XLEN); after the
  restart a shorter history is a rollback of events someone had seen;
- a start the client was told succeeded whose workflow no longer exists is `lost` in
  the checker's verdict (and `handle.result()` raises WorkflowNotFoundError);
- an activity completion that was lost makes the activity run again: the ledger (in
  SQLite, outside Redis) shows the extra run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from redis.exceptions import RedisError

from scripts.chaos import checker, ledger
from scripts.chaos.common import (
    Started,
    StormLoad,
    WorkerPool,
    drop_client,
    open_count,
    start_storms,
    unique_prefix,
    wait_closed,
)
from scripts.chaos.server import PrivateRedis
from sdk import Client


@dataclass(frozen=True)
class CrashConfig(StormLoad):
    crash_every: float = 10.0
    appendfsync: str = "always"
    #: > 0: simulate an OS crash instead of a process kill: each restart loads the AOF
    #: as it was this many seconds before the crash (what `everysec` may lose then).
    lose_last: float = 0.0
    #: Pause between two starts (s): spreads the starts over several crashes.
    start_pause: float = 0.0
    #: Crashes go on until every workflow closed and at least `min_crashes` happened;
    #: they stop after `max_crashes`, or after `chaos_max` seconds.
    min_crashes: int = 0
    max_crashes: int = 1000
    drain: float = 120.0


@dataclass
class CrashReport:
    config: CrashConfig
    verdict: checker.Verdict
    crashes: int = 0
    start_errors: int = 0
    #: Events that a history had just before a crash and not after the restart.
    events_rolled_back: int = 0
    histories_rolled_back: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        crash = "OS crash" if self.config.lose_last else "SIGKILL"
        return (
            f"appendfsync {self.config.appendfsync}, {crash}: {self.verdict.summary()}; "
            f"{self.crashes} crashes in {self.seconds:.0f} s, {self.start_errors} start "
            f"calls failed (retried), {self.events_rolled_back} events in "
            f"{self.histories_rolled_back} histories rolled back by a crash"
        )


async def history_lengths(client: Client, ids: list[str]) -> list[int]:
    """XLEN of every history; waits out the restart (connection refused, LOADING)."""
    while True:
        try:
            pipe = client.redis.pipeline(transaction=False)
            for wf_id in ids:
                pipe.xlen(client.keys.history(wf_id))
            lengths: list[Any] = await pipe.execute()
            return [int(n) for n in lengths]
        except (RedisError, OSError):
            await anyio.sleep(0.05)


async def run(cfg: CrashConfig, workdir: Path) -> CrashReport:
    prefix = unique_prefix("crash")
    server = PrivateRedis(workdir / f"{prefix}-redis", appendfsync=cfg.appendfsync)
    db = ledger.create(workdir / f"{prefix}.sqlite")
    started = Started()
    report = CrashReport(cfg, checker.Verdict())
    began = time.monotonic()
    server.start()
    client = await Client.connect(server.url, prefix=prefix)
    try:
        with (workdir / f"{prefix}.log").open("ab") as log:
            pool = WorkerPool(server.url, prefix, ledger_path=db, liveness=cfg.liveness,
                              log=log)
            try:
                await pool.start(cfg.workers)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: start_storms(
                        client, cfg.workflows, started, cfg.delay, cfg.timer,
                        pause=cfg.start_pause, retry_errors=True))
                    next_crash = time.monotonic() + cfg.crash_every
                    while time.monotonic() - began < cfg.chaos_max:
                        await anyio.sleep(min(1.0, max(0.0, next_crash - time.monotonic())))
                        if (len(started.expected) == cfg.workflows
                                and report.crashes >= cfg.min_crashes
                                and not await _open(client, started)):
                            break
                        if time.monotonic() < next_crash or report.crashes >= cfg.max_crashes:
                            continue
                        snapshot = None
                        if cfg.lose_last > 0:
                            snapshot = await anyio.to_thread.run_sync(server.snapshot)
                            await anyio.sleep(cfg.lose_last)
                        ids = list(started.expected)
                        before = await history_lengths(client, ids)
                        await anyio.to_thread.run_sync(server.restart, snapshot)
                        report.crashes += 1
                        after = await history_lengths(client, ids)
                        lost = [b - a for b, a in zip(before, after, strict=True) if b > a]
                        report.events_rolled_back += sum(lost)
                        report.histories_rolled_back += len(lost)
                        next_crash = time.monotonic() + cfg.crash_every
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
        try:
            await drop_client(client, prefix)
        finally:
            server.close()


async def _open(client: Client, started: Started) -> int:
    while True:
        try:
            return await open_count(client, list(started.expected))
        except (RedisError, OSError):
            await anyio.sleep(0.05)
