"""What a lone workflow step costs a worker: one worker process, signals sent one at a
time (each round of the worker handles one step), against the same steps all at once.

    python -m scripts.bench.lone --url redis://127.0.0.1:6411
    python -m scripts.bench.lone --url ... --steps 1000 --profile .bench-out/lone.pstats

Run from the repository root, against a private server. It grows --workflows `Fleet`
workflows to about --events events (two worker processes, not measured), starts one
`scripts.bench.worker` process, warms it up, then measures: its idle CPU (ms/s), the
worker CPU per step with --steps signals sent one at a time ("lone"), and per step with
every workflow signalled at once, --rounds times ("batched"). The ratio lone/batched
is the per-round overhead that a fleet of many workers with few workflows each pays
(docs/scaling.md). --profile runs the measured worker under cProfile (its figures are
then inflated) and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import sys
from collections.abc import Sequence
from pathlib import Path

import redis

from scripts.bench.fleet import grown
from scripts.bench.fleet_drive import snapshot, start_workers, stop_workers
from scripts.bench.util import WorkerProcess, run_async


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.lone", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="a private server")
    p.add_argument("--workflows", type=int, default=20)
    p.add_argument("--events", type=int, default=100, help="history length")
    p.add_argument("--steps", type=int, default=400, help="lone steps measured")
    p.add_argument("--rounds", type=int, default=20, help="batched rounds measured")
    p.add_argument("--idle", type=float, default=3.0, help="idle window, seconds")
    p.add_argument("--profile", type=Path, default=None, help="cProfile the worker here")
    p.add_argument("--top", type=int, default=40, help="functions shown with --profile")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, float]:
    fleet = await grown(args.url, args.events, args.workflows)
    r = redis.Redis.from_url(args.url)
    out: dict[str, float] = {}
    try:
        if args.profile is not None:
            procs = [WorkerProcess(args.url, fleet.prefix,
                                   extra=["--profile", str(args.profile.resolve())])]
            procs[0].wait_ready(timeout=120)
        else:
            procs = start_workers(args.url, fleet.prefix, 1, 100_000)
        try:
            await fleet.ping_rounds(2)  # warm: every workflow cached on this worker
            await fleet.ping_one_at_a_time(20, [])
            s0 = snapshot(procs, r)
            await asyncio.sleep(args.idle)
            s1 = snapshot(procs, r)
            out["idle_ms_s"] = (s1.worker_cpu_s - s0.worker_cpu_s) * 1000 / (s1.at - s0.at)
            s0 = snapshot(procs, r)
            await fleet.ping_one_at_a_time(args.steps, [])
            s1 = snapshot(procs, r)
            out["lone_ms"] = (s1.worker_cpu_s - s0.worker_cpu_s) * 1000 / args.steps
            out["lone_redis_ms"] = (s1.redis_cpu_s - s0.redis_cpu_s) * 1000 / args.steps
            out["lone_wall_ms"] = (s1.at - s0.at) * 1000 / args.steps
            s0 = snapshot(procs, r)
            steps = await fleet.ping_rounds(args.rounds)
            s1 = snapshot(procs, r)
            out["batched_ms"] = (s1.worker_cpu_s - s0.worker_cpu_s) * 1000 / steps
            out["batched_redis_ms"] = (s1.redis_cpu_s - s0.redis_cpu_s) * 1000 / steps
            out["ratio"] = out["lone_ms"] / out["batched_ms"]
        finally:
            stop_workers(procs)
    finally:
        r.close()
        await fleet.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = run_async(run(args))
    print(f"{args.workflows} workflows, ~{args.events} events; one worker")
    print(f"idle: {out['idle_ms_s']:.2f} ms CPU/s")
    print(f"lone step: worker {out['lone_ms']:.3f} ms CPU, redis {out['lone_redis_ms']:.3f} ms, "
          f"wall {out['lone_wall_ms']:.2f} ms")
    print(f"batched step: worker {out['batched_ms']:.3f} ms CPU, "
          f"redis {out['batched_redis_ms']:.3f} ms")
    print(f"lone / batched worker CPU: {out['ratio']:.2f}x")
    if args.profile is not None and args.profile.exists():
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
