"""The fleet benchmark: what one workflow step costs when K worker processes share the
work, on one private server.

    python -m scripts.bench.fleet --url redis://127.0.0.1:6411 --floor-port 6412
    python -m scripts.bench.fleet --url redis://127.0.0.1:6411 --quick      # ~1 minute
    python -m scripts.bench.fleet --url ... --workers 1,4 --events 1000 --no-floor
    python -m scripts.bench.fleet --url ... --write-docs   # Fleet section, docs/benchmarks.md

Run from the repository root, against a server nothing else uses (its whole CPU is
measured). For each history length (--events) it starts --workflows `Fleet` workflows
that first grow their histories with activities (two worker processes, not measured),
then for each worker count K (--workers): starts K `scripts.bench.worker` processes,
measures them idle, sends --warmup signal rounds (not measured), then measures
--rounds signal rounds (each workflow gets a signal once its code saw the previous
one: all workflows at once) and one burst of --activities activities per workflow.
Per step: the workers' CPU (their own process clock, summed), the server's (INFO cpu),
the workers' cache hits, full replays and new runs (Worker.stats), and signal ->
observed (workflow code reads CLOCK_MONOTONIC when its handler runs). Then the cache
scenario (--cache: W workflows on N workers of max_cached M each), the engine floor's
workers as a fleet of each K under the signal rounds' load (scripts/bench/fleet_floor.py:
what this machine charges a bare engine for the same spread), and single-process
throughput of the 3-step story against the engine floor (shared/bench/floor_wf.py; both
on the floor's own server: --floor-port, else one started here). Raw results:
.bench-out/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

from scripts.bench import redurable_bench as rb
from scripts.bench.fleet_drive import FleetSet, snapshot, start_workers, stop_workers
from scripts.bench.fleet_floor import FloorRow, floor_rows
from scripts.bench.fleet_report import (
    Row,
    Throughput,
    idle_per_worker,
    replace_section,
    table,
    window,
)
from scripts.bench.fleet_report import section as render_section
from scripts.bench.servers import PrivateServer, redis_server_binary, valkey_binary
from scripts.bench.util import CODE, OUT, REPO, loop_name, run_async

DOCS = REPO / "docs" / "benchmarks.md"
FLOOR = REPO.parent / "shared" / "bench" / "floor_wf.py"
#: Worker processes that grow the histories before any measurement.
GROWERS = 2
#: Each K adds ~30 events to every history: a fleet past this factor of its target
#: length is replaced by a fresh one before the next K (for the ~100-event histories).
REGROW = 1.25


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench.fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", required=True, help="a private server (its whole CPU is measured)")
    p.add_argument("--workers", default="1,2,4,8,20", help="comma list of worker counts K")
    p.add_argument("--events", default="100,1000", help="comma list of history lengths")
    p.add_argument("--workflows", type=int, default=200, help="workflows per history length")
    p.add_argument("--rounds", type=int, default=5, help="measured signals per workflow")
    p.add_argument("--warmup", type=int, default=2, help="signals per workflow before measuring")
    p.add_argument("--activities", type=int, default=5, help="measured activities per workflow")
    p.add_argument("--inflight", type=int, default=0, help="signal steps at a time (0: all)")
    p.add_argument(
        "--per-worker", type=int, default=10,
        help="also run each K driving this many workflows per worker (0: skip)",
    )
    p.add_argument("--probes", type=int, default=100, help="signals one at a time, per K")
    p.add_argument("--idle", type=float, default=5.0, help="idle window per K, seconds")
    p.add_argument("--settle", type=float, default=2.0, help="wait after workers start, s")
    p.add_argument("--max-cached", type=int, default=10_000, help="max_cached of each worker")
    p.add_argument(
        "--cache",
        default="300x4x100",
        help="cache scenario WORKFLOWSxWORKERSxMAX_CACHED, or 'none'",
    )
    p.add_argument("--cache-events", type=int, default=100, help="history length, cache scenario")
    p.add_argument("--floor-port", type=int, default=None, help="server port for the floor")
    p.add_argument("--floor-script", type=Path, default=FLOOR)
    p.add_argument("--no-floor", action="store_true", help="skip the throughput comparison")
    p.add_argument("--throughput-n", type=int, default=2000, help="workflows per round")
    p.add_argument("--throughput-rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="K=1,2, 20 workflows, ~100 events")
    p.add_argument("--write-docs", action="store_true", help="write the Fleet section")
    args = p.parse_args(argv)
    if args.quick:
        args.workers, args.events, args.workflows = "1,2", "100", 20
        args.rounds, args.warmup, args.activities, args.probes = 3, 1, 3, 20
        args.idle, args.settle, args.cache = 2.0, 1.0, "30x2x10"
        args.throughput_n, args.throughput_rounds = 400, 1
    args.worker_counts = _ints(p, "--workers", args.workers)
    args.event_counts = _ints(p, "--events", args.events)
    args.cache_plan = None if args.cache == "none" else _ints(p, "--cache", args.cache, "x")
    if args.cache_plan is not None and len(args.cache_plan) != 3:
        p.error("--cache is WORKFLOWSxWORKERSxMAX_CACHED, e.g. 300x4x100")
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost"):
        p.error("--url must be a private server on this machine (its CPU is read)")
    return args


def _ints(p: argparse.ArgumentParser, name: str, text: str, sep: str = ",") -> list[int]:
    try:
        values = [int(v) for v in text.split(sep) if v.strip()]
    except ValueError:
        p.error(f"{name} takes numbers separated by {sep!r}, got {text!r}")
    if not values or min(values) <= 0:
        p.error(f"{name} needs positive numbers, got {text!r}")
    return values


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def measure(
    fleet: FleetSet,
    workers: int,
    args: argparse.Namespace,
    *,
    max_cached: int,
    label: str = "signal",
    activity_label: str = "activity",
    full: bool = True,
    repeat: int = 1,
) -> list[Row]:
    """One worker count on one fleet: idle, warm-up, signal rounds and (`full`) the
    idle window and the activity burst."""
    r = redis.Redis.from_url(args.url)
    procs = start_workers(args.url, fleet.prefix, workers, max_cached)
    rows: list[Row] = []
    try:
        await asyncio.sleep(args.settle)
        idle = None
        if full:
            s0 = snapshot(procs, r)
            await asyncio.sleep(args.idle)
            idle = idle_per_worker(s0, snapshot(procs, r), workers)
        if args.warmup:
            await fleet.ping_rounds(args.warmup, inflight=args.inflight)
        events = await fleet.mean_events()
        loaded: list[float] = []
        s0 = snapshot(procs, r)
        steps = await fleet.ping_rounds(args.rounds * repeat, loaded, args.inflight)
        s1 = snapshot(procs, r)
        latencies: list[float] = []
        await fleet.ping_one_at_a_time(args.probes, latencies)
        rows.append(
            window(label, fleet.target, events, workers, steps, s0, s1,
                   latencies_ms=latencies, loaded_ms=loaded, idle_ms_s=idle,
                   max_cached=None if full else max_cached)
        )
        if full and args.activities:
            events = await fleet.mean_events()
            s0 = snapshot(procs, r)
            steps = await fleet.activity_burst(args.activities * repeat)
            s1 = snapshot(procs, r)
            rows.append(window(activity_label, fleet.target, events, workers, steps, s0, s1))
    finally:
        stop_workers(procs)
        r.close()
    return rows


async def grown(url: str, target: int, n: int) -> FleetSet:
    """A fleet of `n` workflows with histories of about `target` events."""
    fleet = await FleetSet(url, target, n).open()
    t0 = time.monotonic()
    procs = start_workers(url, fleet.prefix, GROWERS, 100_000)
    try:
        await fleet.grow()
    finally:
        stop_workers(procs)
    log(f"   grew {n} histories to ~{await fleet.mean_events()} events "
        f"in {time.monotonic() - t0:.1f} s")
    return fleet


async def fleet_rows(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for target in args.event_counts:
        log(f"== {args.workflows} workflows, ~{target} events")
        fleet = await grown(args.url, target, args.workflows)
        try:
            for k in args.worker_counts:
                fleet.active = 0
                if await fleet.mean_events(everyone=True) > REGROW * target:
                    await fleet.close()
                    fleet = await grown(args.url, target, args.workflows)
                t0 = time.monotonic()
                rows += await measure(fleet, k, args, max_cached=args.max_cached)
                log(f"   K={k}: {time.monotonic() - t0:.1f} s")
                if args.per_worker and args.per_worker * k <= args.workflows:
                    # The same fleet with each worker's load held constant: K workers
                    # drive per_worker * K workflows (what adding workers to carry more
                    # load looks like), apart from the batching a fixed load loses.
                    t0 = time.monotonic()
                    fleet.active = args.per_worker * k
                    per = f"{args.per_worker}/worker"
                    # As many steps as the fixed-load window: fewer workflows, more each.
                    repeat = max(1, args.workflows // fleet.active)
                    rows += await measure(fleet, k, args, max_cached=args.max_cached,
                                          label=f"signal, {per}", activity_label=f"activity, {per}",
                                          repeat=repeat)
                    log(f"   K={k}, {per}: {time.monotonic() - t0:.1f} s")
        finally:
            await fleet.close()
        log(table(rows))
    if args.cache_plan is not None:
        n, workers, max_cached = args.cache_plan
        log(f"== cache: {n} workflows on {workers} workers of max_cached {max_cached}")
        fleet = await grown(args.url, args.cache_events, n)
        try:
            rows += await measure(
                fleet, workers, args, max_cached=max_cached, label=f"signal, {n} wf", full=False
            )
        finally:
            await fleet.close()
    return rows


class AttachedServer(PrivateServer):
    """The --url server as rb.throughput expects a server: started and stopped by
    someone else (nothing of PrivateServer.__init__ applies: no process, no directory)."""

    def __init__(self, url: str) -> None:
        self.binary, self.appendfsync, self.replica_of = "", None, None
        self.port = urlparse(url).port or 6379
        self.dir = Path("/nonexistent")
        self.process = None
        self.label = "redis"

    def stop(self) -> None:
        pass


def floor_round(script: Path, port: int, n: int) -> float:
    """One run of the engine floor with one worker process: its workflows/s."""
    cmd = [sys.executable, str(script), "--port", str(port), "--workers", "1",
           "--n", str(n), "--lat-n", "50"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the floor failed ({shlex.join(cmd)}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return float(result["throughput_wf3"]["wf_per_s"])


async def throughput(args: argparse.Namespace) -> Throughput:
    """Interleaved rounds of redurable (1 worker process, --url) and the floor."""
    if not args.floor_script.exists():
        raise FileNotFoundError(f"no engine floor at {args.floor_script} (--floor-script)")
    own: PrivateServer | None = None
    port = args.floor_port
    if port is None:
        own = PrivateServer(redis_server_binary() or valkey_binary()).start()
        port = own.port
    ours, floor = [], []
    try:
        for i in range(args.throughput_rounds):
            result = await rb.throughput(AttachedServer(args.url), 1, args.throughput_n)
            ours.append(float(result["wf_per_s"]))
            floor.append(floor_round(args.floor_script, port, args.throughput_n))
            log(f"   round {i + 1}: redurable {ours[-1]:,.0f} wf/s, floor {floor[-1]:,.0f}")
    finally:
        if own is not None:
            own.stop()
    return Throughput(redurable=ours, floor=floor)


def meta(args: argparse.Namespace, argv: Sequence[str], seconds: float) -> dict[str, str]:
    def sh(cmd: str) -> str:
        run = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=REPO)
        return run.stdout.strip()

    with redis.Redis.from_url(args.url) as r:
        info: Any = r.info("server")
    server = f"redis-server {info.get('redis_version')}"
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
    cache = "no cache scenario"
    if args.cache_plan is not None:
        n, k, m = args.cache_plan
        cache = f"cache scenario {n} workflows on {k} workers of max_cached {m}, " \
                f"~{args.cache_events} events"
    return {
        "command": shlex.join(["python", "-m", "scripts.bench.fleet", *argv]),
        "duration": f"{seconds / 60:.1f} min",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": sh("git rev-parse --short HEAD") + (" (dirty)" if sh("git status -s -- engine sdk")
                                                  else ""),
        "machine": f"{sh('nproc')} cores ({cpu}), kernel {platform.release()}, python "
                   f"{platform.python_version()} ({loop_name()}), {server}",
        "load": " ".join(sh("cat /proc/loadavg").split()[:3]),
        "workload": f"{args.workflows} workflows per history length, signal steps "
                    f"{args.inflight or 'all'} at a time; per K {args.warmup} warm-up + "
                    f"{args.rounds} measured signals and {args.activities} activities per "
                    f"workflow, then {args.probes} signals one at a time for the latency; "
                    f"max_cached {args.max_cached}; {cache}",
    }


def floor_fleet(args: argparse.Namespace) -> list[FloorRow]:
    """The engine floor's workers as a fleet of each K, on the floor's server, with the
    signal rounds' load (scripts/bench/fleet_floor.py)."""
    own: PrivateServer | None = None
    port = args.floor_port
    if port is None:
        own = PrivateServer(redis_server_binary() or valkey_binary()).start()
        port = own.port
    try:
        # Four times our rounds: the floor's windows are short (1,000 steps in 0.1-0.3 s
        # at K=20), and a step's cost does not depend on how many each workflow takes.
        return floor_rows(port, args.worker_counts, args.workflows, 4 * args.rounds,
                          args.warmup, args.per_worker, args.floor_script)
    finally:
        if own is not None:
            own.stop()


async def run(
    args: argparse.Namespace,
) -> tuple[list[Row], Throughput | None, list[FloorRow]]:
    rows = await fleet_rows(args)
    result: Throughput | None = None
    floor: list[FloorRow] = []
    if not args.no_floor:
        log("== the engine floor as a fleet")
        floor = await asyncio.to_thread(floor_fleet, args)
        log("== single-process throughput and the engine floor")
        result = await throughput(args)
    return rows, result, floor


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if Path.cwd().resolve() != CODE:
        log(f"run from the repository root ({CODE}): the workers are started there")
    t0 = time.monotonic()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows, result, floor = run_async(run(args))
    info = meta(args, argv, time.monotonic() - t0)
    info["load"] = load
    body = render_section(info, rows, result, floor)
    print(body)
    OUT.mkdir(exist_ok=True)
    raw = {
        "meta": info,
        "rows": [row.to_json() for row in rows],
        "throughput": None if result is None else vars(result) | {"fraction": result.fraction},
        "floor_fleet": [row.to_json() for row in floor],
    }
    (OUT / "fleet.json").write_text(json.dumps(raw, indent=1))
    if args.write_docs:
        DOCS.write_text(replace_section(DOCS.read_text(), body))
        log(f"wrote the Fleet section of {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
