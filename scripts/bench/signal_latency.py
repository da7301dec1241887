"""Signal -> observed, one signal at a time, and nothing else: the fleet benchmark's
latency column without its throughput rounds, for many short A/B runs.

    python -m scripts.bench.signal_latency --url redis://127.0.0.1:6490 --probes 300
    python -m scripts.bench.signal_latency --url ... --json .bench-out/lat.json

Run from the repository root against a private server. It grows --workflows `Fleet`
workflows to about --events events, starts one `scripts.bench.worker` process, warms it
(one round of signals to every workflow, then --warmup signals one at a time), then
sends --probes signals one at a time to workflow 0, 1, 2, ... (each after the last one's
task committed) and prints p10/p50/p90/p99 of signal -> observed: from before the
client's `signal()` to the stamp the workflow's code writes when it sees the signal.
--json writes the raw latencies (ms) for pooling runs. Alternating two checkouts:

    for i in 1 2 3; do for d in ../wt-base .; do (cd $d && PYTHONPATH=$PWD \\
        python -m scripts.bench.signal_latency --url ...); done; done
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.bench.fleet import grown
from scripts.bench.fleet_drive import FleetSet, stop_workers
from scripts.bench.util import OUT, WorkerProcess, run_async
from scripts.bench.workload import Fleet


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.signal_latency",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="a private server")
    p.add_argument("--workflows", type=int, default=20)
    p.add_argument("--events", type=int, default=100, help="history length")
    p.add_argument("--probes", type=int, default=300, help="signals measured")
    p.add_argument("--warmup", type=int, default=40, help="one-at-a-time signals not measured")
    p.add_argument("--json", type=Path, default=None, help="write the raw latencies here")
    p.add_argument("--trace", action="store_true",
                   help="split each probe: the signal call's reply, the worker's read "
                        "returning the task, the workflow code seeing it (medians)")
    return p.parse_args(argv)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> list[float]:
    fleet = await grown(args.url, args.events, args.workflows)
    reads_file = OUT / f"reads-{fleet.prefix}.json"
    try:
        extra = ["--max-cached", "100000"]
        if args.trace:
            extra += ["--trace-reads", str(reads_file.resolve())]
        workers = [WorkerProcess(args.url, fleet.prefix, extra=extra)]
        workers[0].wait_ready(timeout=120)
        try:
            await fleet.ping_rounds(1)  # every workflow cached on this worker
            await fleet.ping_one_at_a_time(args.warmup, [])
            latencies: list[float] = []
            if args.trace:
                probes = await traced_probes(fleet, args.probes)
                latencies = [(seen - sent) / 1e6 for sent, _, seen in probes]
            else:
                await fleet.ping_one_at_a_time(args.probes, latencies)
        finally:
            stop_workers(workers)
        if args.trace:
            print_split(probes, json.loads(reads_file.read_text()))
            reads_file.unlink()
    finally:
        await fleet.close()
    return latencies


async def traced_probes(fleet: FleetSet, count: int) -> list[tuple[int, int, int]]:
    """As FleetSet.ping_one_at_a_time, with the time the signal call answered:
    (sent, answered, seen) per probe, CLOCK_MONOTONIC ns."""
    probes = []
    for j in range(count):
        i = j % fleet.driven
        fleet.asked[i] += 1
        sent = time.monotonic_ns()
        await fleet.handles[i].signal(Fleet.ping)
        answered = time.monotonic_ns()
        seen = await fleet.slots.reached(i, fleet.asked[i])
        probes.append((sent, answered, seen))
        await fleet.committed(i)
    return probes


def print_split(probes: list[tuple[int, int, int]], reads: list[list[int]]) -> None:
    """Each probe's time to the signal call's reply, to the worker's read returning the
    task (the last read that returned between sent and seen), and from that to the
    workflow code seeing it; medians, ms."""
    returns = sorted(r[1] for r in reads)
    answered, woken, code = [], [], []
    for sent, acked, seen in probes:
        at = bisect.bisect_right(returns, seen) - 1
        if at < 0 or returns[at] < sent:
            continue  # the task came another way (eager, a backlog): not split
        answered.append((acked - sent) / 1e6)
        woken.append((returns[at] - sent) / 1e6)
        code.append((seen - returns[at]) / 1e6)
    if not woken:
        print("split: no probe's task came from a read")
        return
    print(f"split over {len(woken)} of {len(probes)} probes, medians ms: signal call answered "
          f"{statistics.median(answered):.3f}, worker's read returned "
          f"{statistics.median(woken):.3f}, read -> code saw it {statistics.median(code):.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    latencies = run_async(run(args))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(latencies))
    print(f"signal->observed ms over {len(latencies)}: "
          f"p10 {quantile(latencies, 0.1):.3f} p50 {statistics.median(latencies):.3f} "
          f"p90 {quantile(latencies, 0.9):.3f} p99 {quantile(latencies, 0.99):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
