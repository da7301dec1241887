"""What an activity step costs by how the activity ends: completed, failed for good, or
failed once (retried) and then for good. docs/design-notes.md "One-write activity
steps": a completion and a final failure are one write where the worker owns the run;
a retry keeps its own call (a retry timer, no workflow task).

    python -m scripts.bench.failure_steps --url redis://127.0.0.1:6530
    python -m scripts.bench.failure_steps --url ... --outcomes final --workers 1,4 --repeat 3

Against a private server only (its whole CPU is measured; it is flushed first). For each
worker count K and outcome: starts K `scripts.bench.worker` processes, starts --workflows
`Ends` workflows (scripts/bench/workload.py), which wait for a `start` signal, then
measures from the signals to the last result: --activities activities per workflow, one
after another, each ending as the outcome says. Per activity step: the workers' CPU
(process clock, summed), the server's (INFO cpu), the workers' round trips and commands
sent (scripts/bench/counters.py), the server's FCALLs (INFO commandstats: the driver's
`start` signals included, 1/--activities a step), and the workers' one-write steps and
workflow tasks (Worker.stats). Raw results: .bench-out/failure_steps.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import redis

from scripts.bench import workload
from scripts.bench.fleet_drive import snapshot, start_workers, stop_workers
from scripts.bench.fleet_report import Snapshot
from scripts.bench.util import OUT, run_async
from scripts.bench.worker import TASK_QUEUE
from sdk import Client

#: Worker stats shown per step (missing ones count 0: an older tree has no such stat).
STATS = ("one_write_steps", "one_write_failures", "one_write_refused", "workflow_tasks",
         "eager_workflow_tasks", "full_replays")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.failure_steps",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="a private server (flushed, CPU measured)")
    p.add_argument("--workers", default="1", help="comma list of worker counts K")
    p.add_argument("--outcomes", default="complete,final,retried",
                   help="comma list of: complete, final, retried")
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--activities", type=int, default=5, help="activities per workflow")
    p.add_argument("--repeat", type=int, default=1, help="runs of each (K, outcome)")
    return p.parse_args(argv)


def fcalls(r: redis.Redis) -> int:
    stats: Any = r.info("commandstats")
    return int(stats.get("cmdstat_fcall", {}).get("calls", 0))


async def one_run(args: argparse.Namespace, k: int, outcome: str) -> dict[str, Any]:
    r = redis.Redis.from_url(args.url)
    r.flushall()
    prefix = f"fs{time.monotonic_ns()}"
    workers = start_workers(args.url, prefix, k, 100_000)
    client = await Client.connect(args.url, prefix=prefix)
    try:
        handles = await asyncio.gather(*(
            client.start_workflow(workload.Ends.run, args.activities, outcome,
                                  id=f"ends-{i}", task_queue=TASK_QUEUE)
            for i in range(args.workflows)))
        # Each one waiting for its signal: started, its first workflow task written.
        while min(await asyncio.gather(*(
                client.redis.xlen(client.keys.history(h.id)) for h in handles))) < 2:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        before: Snapshot = snapshot(workers, r)
        calls_before = fcalls(r)
        started = time.monotonic()
        await asyncio.gather(*(h.signal(workload.Ends.start) for h in handles))
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 300)
        seconds = time.monotonic() - started
        after: Snapshot = snapshot(workers, r)
        calls = fcalls(r) - calls_before
    finally:
        await client.close()
        stop_workers(workers)
    steps = args.workflows * args.activities
    want = 0 if outcome == "complete" else args.activities
    assert all(n == want for n in results), "an activity ended otherwise than asked"
    delta = {key: after.counts.get(key, 0) - before.counts.get(key, 0)
             for key in ("round_trips", "commands", *STATS)}
    # Why one-write steps were refused (the Lua's word: docs/design-notes.md).
    refused = {key: after.counts[key] - before.counts.get(key, 0)
               for key in after.counts if key.startswith("one_write_refused_")}
    return {
        "workers": k, "outcome": outcome, "steps": steps, "seconds": round(seconds, 3),
        "worker_cpu_ms": round((after.worker_cpu_s - before.worker_cpu_s) * 1e3 / steps, 4),
        "redis_cpu_ms": round((after.redis_cpu_s - before.redis_cpu_s) * 1e3 / steps, 4),
        "fcalls": round(calls / steps, 3),
        "round_trips": round(delta["round_trips"] / steps, 3),
        "commands": round(delta["commands"] / steps, 3),
        **{key: round(delta[key] / steps, 3) for key in STATS},
        "refused": {key: n for key, n in refused.items() if n},
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    header = ("K", "outcome", "worker CPU ms", "Redis CPU ms", "FCALLs", "round trips",
              "commands", *STATS)
    print(" | ".join(header))
    for _ in range(args.repeat):
        for k in (int(x) for x in args.workers.split(",")):
            for outcome in args.outcomes.split(","):
                row = run_async(one_run(args, k, outcome))
                rows.append(row)
                print(" | ".join(str(row[key]) for key in (
                    "workers", "outcome", "worker_cpu_ms", "redis_cpu_ms", "fcalls",
                    "round_trips", "commands", *STATS)) + (
                        f" | refused {row['refused']}" if row["refused"] else ""), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "failure_steps.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
