"""A benchmark worker in its own process: `python -m scripts.bench.worker --url U --prefix P`.

Prints `ready <pid>` once it has joined the task queue; on SIGUSR1 it prints one
`counters <json>` line (round trips and commands it sent so far, the Worker's `stats`
counters such as cache_hits and full_replays, and its own CPU time in ns: /proc counts
in 10 ms ticks, too coarse for short windows); on SIGTERM it drains and prints one
`stats <json>` line (the same counters, tasks it ran, RSS) and exits.
`--profile FILE` runs it under cProfile (on the process CPU clock) and writes the stats
to FILE. REDURABLE_BENCH_PROFILE_DIR=DIR profiles every worker a benchmark starts, in
its measured windows only: from each odd `counters` line to the next (the fleet
benchmark's idle window, then its signal rounds, ...), into DIR/worker-PID.prof.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

from scripts.bench import counters, workload
from scripts.bench.util import use_uvloop
from sdk import Client, Worker, configure_logging
from sdk._metrics import new_registry

TASK_QUEUE = "bench"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="redurable benchmark worker")
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--task-queue", default=TASK_QUEUE)
    p.add_argument("--max-cached", type=int, default=10000)
    p.add_argument("--liveness", type=float, default=5.0)
    p.add_argument("--durability", default=None, help="Client durability mode (e.g. fsync)")
    p.add_argument("--profile", default=None, help="write cProfile stats to this file")
    p.add_argument("--trace-reads", default=None,
                   help="write when each task read that found tasks began and returned "
                        "(CLOCK_MONOTONIC ns, JSON) to this file (scripts.bench.signal_latency)")
    # An environment variable too, so the fleet benchmark's workers take it unchanged.
    p.add_argument("--metrics", action="store_true",
                   default=os.environ.get("REDURABLE_BENCH_METRICS") == "1",
                   help="Prometheus metrics on (a registry of its own, not served)")
    return p.parse_args(argv)


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def snapshot(worker: Worker) -> dict[str, int]:
    """The counters line: client counters, the Worker's stats, and CPU time so far
    (with its user/system split and the context switches, from getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **counters.snapshot(),
        **dict(worker.stats),
        "cpu_ns": time.process_time_ns(),
        "user_us": round(usage.ru_utime * 1e6),
        "sys_us": round(usage.ru_stime * 1e6),
        "voluntary_switches": usage.ru_nvcsw,
        "involuntary_switches": usage.ru_nivcsw,
    }


class WindowProfile:
    """cProfile switched on and off by the counters lines (REDURABLE_BENCH_PROFILE_DIR)."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, f"worker-{os.getpid()}.prof")
        self.profiler = cProfile.Profile(time.process_time)
        self.on = False

    def toggle(self) -> None:
        if self.on:
            self.profiler.disable()
        else:
            self.profiler.enable()
        self.on = not self.on

    def dump(self) -> None:
        if self.on:
            self.profiler.disable()
        self.profiler.dump_stats(self.path)


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    counters.install()
    client = await Client.connect(args.url, prefix=args.prefix, durability=args.durability)
    try:
        worker = Worker(
            client,
            task_queue=args.task_queue,
            workflows=workload.WORKFLOWS,
            activities=workload.ACTIVITIES,
            max_cached_workflows=args.max_cached,
            liveness_timeout=args.liveness,
            metrics_registry=new_registry() if args.metrics else None,
            handle_signals=True,
        )
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            key = client.keys.workers(args.task_queue)
            while await client.redis.zscore(key, worker.identity) is None:
                await anyio.sleep(0.01)
            folder = os.environ.get("REDURABLE_BENCH_PROFILE_DIR")
            window = WindowProfile(folder) if folder else None

            def counters_line() -> None:
                print("counters " + json.dumps(snapshot(worker)), flush=True)
                if window is not None:
                    window.toggle()

            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, counters_line)
            print(f"ready {os.getpid()}", flush=True)
        if window is not None:
            window.dump()
        return {
            "pid": os.getpid(),
            "seconds": time.monotonic() - started,
            "cached": len(worker.cache),
            "rss_kib": rss_kib(),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "cpu_s": time.process_time(),
            **dict(worker.stats),
            **counters.snapshot(),
        }
    finally:
        await client.close()


def trace_reads(reads: list[tuple[int, int, int]]) -> None:
    """Record (began, returned, tasks) of every TaskPlumbing.read that found tasks."""
    from sdk.worker.plumbing import TaskPlumbing

    read = TaskPlumbing.read

    async def traced(self: TaskPlumbing, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic_ns()
        tasks = await read(self, *args, **kwargs)
        if tasks:
            reads.append((began, time.monotonic_ns(), len(tasks)))
        return tasks

    TaskPlumbing.read = traced  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    reads: list[tuple[int, int, int]] = []
    if args.trace_reads:
        trace_reads(reads)
    configure_logging(level="WARNING")
    # On the process's CPU clock: time spent blocked (in the loop's poll) is not counted.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    stats = anyio.run(serve, args, backend="asyncio", backend_options={"use_uvloop": use_uvloop()})
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if args.trace_reads:
        with open(args.trace_reads, "w") as f:
            json.dump(reads, f)
    print("stats " + json.dumps(stats), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
