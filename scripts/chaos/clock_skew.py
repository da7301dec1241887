"""Scenario 7, clock skew: two worker processes whose clocks run 5 minutes ahead and 5
minutes behind (libfaketime, Debian package `faketime`) run Clocks workflows
(scripts/chaos/poison_workflows.py): a durable sleep and a wait_condition timeout, each
`--ms` long, and a 150 ms activity start-to-close timeout. Timers live in Redis and fire on the
server's clock, so each must fire `ms` after it was set, on the server clock, give or
take a timer scan (sdk/worker/timers.py): the report gives the worst lateness of each kind (goal:
under 100 ms, never early). Event times are the server's (history `ts`), so they are
exact. It also checks what compares times across processes: the skewed workers count as
live (their beats are on the server clock) and answer queries (the deadline too).

    python -m scripts.chaos.clock_skew [--redis-url URL] [--workflows 20] [--ms 500]

The faketime command is installed with apt-get when missing (as root, or with sudo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio

from scripts.chaos import checker
from scripts.chaos.common import (
    drop_client,
    run_on_server,
    scenario_parser,
    server_ms,
    unique_prefix,
)
from scripts.chaos.poison_workflows import Clocks, SignalLog
from sdk import Client
from sdk.client.registry import live_registry
from tests.integration.worker_proc import WorkerProcess

MODULE = "scripts.chaos.poison_workflows"
TASK_QUEUE = "skew"
SKEWS = ("+5m", "-5m")


def ensure_faketime() -> tuple[str | None, str]:
    """The faketime command, installed with apt-get if missing; else None and why."""
    found = shutil.which("faketime")
    if found:
        return found, ""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        return None, "faketime is not installed and apt-get needs root (no sudo)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "faketime"]
    try:
        if subprocess.run(install, capture_output=True, timeout=300, env=env).returncode:
            # A fresh machine may have no package lists yet.
            subprocess.run([*sudo, "apt-get", "update", "-q"], capture_output=True,
                           timeout=300, env=env, check=True)
            subprocess.run(install, capture_output=True, timeout=300, env=env, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"faketime is not installed and apt-get install faketime failed: {exc}"
    found = shutil.which("faketime")
    return found, "" if found else "apt-get installed faketime but it is not on PATH"


def skewed_now(faketime: str, skew: str) -> float:
    """time.time() in a process under `faketime -f skew`: proof that the skew works."""
    out = subprocess.run([faketime, "-f", skew, sys.executable, "-c",
                          "import time; print(time.time())"],
                         capture_output=True, text=True, timeout=30, check=True)
    return float(out.stdout)


@dataclass(frozen=True)
class SkewConfig:
    workflows: int = 20
    ms: int = 500
    activity_ms: int = 150
    liveness: float = 1.0
    skews: tuple[str, ...] = SKEWS
    """One worker per faketime offset ("+0" for a baseline without skew)."""


@dataclass
class SkewReport:
    cfg: SkewConfig
    #: Worst and best lateness (ms, server clock) per kind: sleep, condition, activity.
    late: dict[str, list[int]] = field(default_factory=dict)
    live_workers: int = 0
    query_answered: bool = False
    worker_offsets_s: list[float] = field(default_factory=list)
    verdict: checker.Verdict = field(default_factory=checker.Verdict)

    def worst(self, kind: str) -> int:
        return max(self.late.get(kind, [0]))

    def earliest(self, kind: str) -> int:
        return min(self.late.get(kind, [0]))

    def line(self) -> str:
        kinds = ", ".join(f"{k} {self.earliest(k)}..{self.worst(k)} ms" for k in self.late)
        offsets = ", ".join(f"{o:+.0f} s" for o in self.worker_offsets_s)
        return (
            f"clock skew (worker clocks {offsets}): {self.cfg.workflows} workflows, "
            f"{self.cfg.ms} ms timers fired late by {kinds}; {self.live_workers} workers "
            f"seen live; query answered: {self.query_answered}; {self.verdict.summary()}"
        )


def _lateness(events: list[dict[bytes, bytes]], ms: int, activity_ms: int) -> dict[str, int]:
    """Lateness of the run's two timers and its activity timeout, from event times."""
    ts = [(f[b"type"].decode(), int(f[b"ts"])) for f in events]
    starts = [t for kind, t in ts if kind == "TimerStarted"]
    fires = [t for kind, t in ts if kind == "TimerFired"]
    scheduled = [t for kind, t in ts if kind == "ActivityTaskScheduled"]
    timed_out = [t for kind, t in ts if kind == "ActivityTaskTimedOut"]
    out: dict[str, int] = {}
    for kind, begin, end, length in (("sleep", starts[:1], fires[:1], ms),
                                     ("condition", starts[1:2], fires[1:2], ms),
                                     ("activity", scheduled, timed_out, activity_ms)):
        if begin and end:
            out[kind] = end[0] - begin[0] - length
    return out


async def run(url: str, cfg: SkewConfig, faketime: str) -> SkewReport:
    report = SkewReport(cfg)
    prefix = unique_prefix("skew")
    client = await Client.connect(url, prefix=prefix)
    workers: list[WorkerProcess] = []
    try:
        for skew in cfg.skews:
            proc = WorkerProcess(url, prefix, TASK_QUEUE, MODULE, liveness=cfg.liveness)
            proc.args[:0] = [faketime, "-f", skew]
            workers.append(proc.start())
        for proc in workers:
            await anyio.to_thread.run_sync(proc.wait_ready)
        now = await server_ms(client) / 1000
        for skew in cfg.skews:
            report.worker_offsets_s.append(
                await anyio.to_thread.run_sync(skewed_now, faketime, skew) - now)
        ids = [f"clocks-{i}" for i in range(cfg.workflows)]
        handles = [await client.start_workflow(Clocks.run, cfg.ms, cfg.activity_ms, id=i,
                                               task_queue=TASK_QUEUE) for i in ids]
        # Replies from both workers: queries go to whichever reads first, so ask often.
        log = await client.start_workflow(SignalLog.run, 1, id="skew-query",
                                          task_queue=TASK_QUEUE)
        report.query_answered = all([await log.query(SignalLog.received) == 0
                                     for _ in range(6)])
        await log.signal(SignalLog.add, 1)
        report.live_workers = (await live_registry(client, TASK_QUEUE)).live_workers
        with anyio.fail_after(60 + 10 * cfg.ms / 1000):
            for handle in handles:
                await handle.result()
            await log.result()
        for wf_id in ids:
            entries: Any = await client.redis.xrange(client.keys.history(wf_id))
            events = [f for _, f in entries]
            for kind, late in _lateness(events, cfg.ms, cfg.activity_ms).items():
                report.late.setdefault(kind, []).append(late)
        expected = dict.fromkeys(ids, "ActivityTimeoutError") | {"skew-query": [1]}
        report.verdict = await checker.check(client.redis, client.keys, client.codec,
                                             expected)
    finally:
        for proc in workers:
            proc.kill()
        await drop_client(client, prefix)
    return report


def main(argv: list[str] | None = None) -> None:
    p = scenario_parser(__doc__)
    p.add_argument("--workflows", type=int, default=SkewConfig.workflows)
    p.add_argument("--ms", type=int, default=SkewConfig.ms)
    p.add_argument("--skew", action="append", default=None,
                   help="faketime offset of one worker, repeatable (default: +5m and -5m)")
    args = p.parse_args(argv)
    faketime, why = ensure_faketime()
    if faketime is None:
        sys.exit(f"clock skew: cannot run: {why}")
    cfg = SkewConfig(workflows=args.workflows, ms=args.ms, skews=tuple(args.skew or SKEWS))
    report = run_on_server(args.redis_url, lambda url: run(url, cfg, faketime))
    print(report.line())
    if not report.verdict.ok:
        print(report.verdict.details())
        sys.exit(1)


if __name__ == "__main__":
    main()
