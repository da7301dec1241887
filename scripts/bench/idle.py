"""What idle workers cost: CPU of each worker process and of the Redis server, and the
commands they send, while no workflow runs.

    python -m scripts.bench.idle --url redis://127.0.0.1:6421
    python -m scripts.bench.idle --url redis://127.0.0.1:6421 --seconds 20 --workers 1,4,8
    python -m scripts.bench.idle --url redis://127.0.0.1:6421 --commands   # per command

Run from the repository root, against a server nothing else uses (its CPU and command
counts are the whole server's). For each worker count K it starts K processes of
`python -m sdk.cli.main worker sdk.examples.order --task-queue orders` in a fresh
namespace, waits until all K have beaten, lets them settle (`--settle`), then measures
for `--seconds`: each worker's CPU from /proc/PID/stat (utime + stime), the server's
from INFO cpu (used_cpu_user + used_cpu_sys) and its commands from INFO commandstats.
The "server alone" row is the same window with no worker: the server's own cron.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
TASK_QUEUE = "orders"


@dataclass
class Sample:
    workers: int
    worker_cpu_ms_s: list[float] = field(default_factory=list)
    server_cpu_ms_s: float = 0.0
    commands_s: float = 0.0
    by_command: dict[str, float] = field(default_factory=dict)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.idle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="Redis to use (its whole CPU is measured)")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per row")
    p.add_argument("--settle", type=float, default=3.0, help="wait after start, seconds")
    p.add_argument("--workers", default="1,4", help="comma list of worker counts")
    p.add_argument("--commands", action="store_true", help="also list commands/s by name")
    return p.parse_args(argv)


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name (field 2) may hold spaces: count from after its ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS  # utime, stime (fields 14, 15)


def server_counters(r: redis.Redis) -> tuple[float, dict[str, int]]:
    cpu: Any = r.info("cpu")
    stats: Any = r.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


def start_workers(url: str, prefix: str, count: int) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "sdk.cli.main", "worker", "sdk.examples.order",
           "--task-queue", TASK_QUEUE, "--redis-url", url, "--prefix", prefix,
           "--log-level", "WARNING"]
    return [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        for _ in range(count)
    ]


def wait_beating(r: redis.Redis, prefix: str, procs: list[subprocess.Popen[bytes]]) -> None:
    key = f"{prefix}:workers:{TASK_QUEUE}"
    deadline = time.monotonic() + 60
    while int(r.zcard(key)) < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("the workers did not start (run from the repository root)")
        time.sleep(0.1)


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def measure(r: redis.Redis, url: str, count: int, seconds: float, settle: float) -> Sample:
    prefix = f"idle{uuid.uuid4().hex[:8]}"
    procs = start_workers(url, prefix, count)
    try:
        if procs:
            wait_beating(r, prefix, procs)
        time.sleep(settle)
        cpu0 = [proc_cpu_s(p.pid) for p in procs]
        srv0, calls0 = server_counters(r)
        t0 = time.monotonic()
        time.sleep(seconds)
        cpu1 = [proc_cpu_s(p.pid) for p in procs]
        srv1, calls1 = server_counters(r)
        elapsed = time.monotonic() - t0
    finally:
        stop_workers(procs)
    # Our own INFO calls: one of each pair falls inside the window.
    calls1["info"] = calls1.get("info", 0) - 2
    by_command = {
        name: (n - calls0.get(name, 0)) / elapsed
        for name, n in calls1.items()
        if n - calls0.get(name, 0) > 0
    }
    return Sample(
        workers=count,
        worker_cpu_ms_s=[(b - a) * 1000 / elapsed for a, b in zip(cpu0, cpu1, strict=True)],
        server_cpu_ms_s=(srv1 - srv0) * 1000 / elapsed,
        commands_s=sum(by_command.values()),
        by_command=by_command,
    )


def table(samples: list[Sample]) -> str:
    lines = [
        "| workers | CPU per worker, ms/s (mean, max) | Redis CPU, ms/s | Redis commands/s |",
        "|--:|--:|--:|--:|",
    ]
    for s in samples:
        if s.workers:
            mean = statistics.fmean(s.worker_cpu_ms_s)
            per = f"{mean:.1f} ({max(s.worker_cpu_ms_s):.1f})"
        else:
            per = "-"
        who = str(s.workers) if s.workers else "server alone"
        lines.append(f"| {who} | {per} | {s.server_cpu_ms_s:.1f} | {s.commands_s:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(k) for k in args.workers.split(",") if k.strip()]
    r = redis.Redis.from_url(args.url)
    samples = [measure(r, args.url, k, args.seconds, args.settle) for k in [0, *counts]]
    print(f"idle workers, {args.seconds:g} s windows after {args.settle:g} s to settle")
    print(table(samples))
    if args.commands:
        for s in samples[1:]:
            top = sorted(s.by_command.items(), key=lambda kv: -kv[1])
            print(f"K={s.workers}: " + ", ".join(f"{n} {v:.0f}/s" for n, v in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
