"""What one cached workflow run costs in worker memory (the sticky cache's per-run cost).

    PYTHONPATH=. .venv/bin/python -m scripts.bench.cache_memory --url redis://127.0.0.1:P

For each shape (workload.py's workflows, parked at a few history lengths) one child
process runs an in-process worker and a driver on a private server (flushed): it warms
the worker with a few runs of the shape, then starts `-n` more and lets them park with
the cache warm (no workflow task, activity task or history event moving for a while).
The growth per run is measured twice, in separate children: RSS (tracemalloc off) and
tracemalloc (on), the latter grouped by where it was allocated (the innermost frame of
this repository's code: machine / loop / workflow code / ...) and, from gc, by type.
`--max-cached 1` runs the same with the runs evicted as they park: what is left then is
the cost a run keeps outside the cache. Prints one JSON line per shape.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import redis

from scripts.bench import workload
from sdk import Client, Worker

TASK_QUEUE = "cache-memory"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: name -> (workflow run method, its arguments, signal to send after start, worker of
#: workflows only). Fleet(pad) grows its history with gathered activities, then waits
#: for a signal; "go" runs that many activities one after another first.
SHAPES: dict[str, tuple[Any, list[Any], tuple[str, list[Any]] | None, bool]] = {
    "gate": (workload.Gate.run, [], None, False),
    "steps3-parked": (workload.Steps.run, [3], None, True),
    "fleet-seq-3": (workload.Fleet.run, ["", 0, 0], ("go", [3]), False),
    "fleet-seq-30": (workload.Fleet.run, ["", 0, 0], ("go", [30]), False),
    "fleet-seq-300": (workload.Fleet.run, ["", 0, 0], ("go", [300]), False),
    "fleet-pad-30": (workload.Fleet.run, ["", 0, 30], None, False),
    "fleet-pad-300": (workload.Fleet.run, ["", 0, 300], None, False),
}

#: Where an allocation's innermost frame of this repository's code is -> a part.
PARTS = [
    ("engine/loop.py", "deterministic loop"),
    ("engine/machine.py", "machine"),
    ("engine/replay.py", "machine"),
    ("engine/activities.py", "machine"),
    ("engine/", "engine (other)"),
    ("sdk/worker/workflow_runner.py", "runner: hooks, instance, run coroutine"),
    ("sdk/worker/", "worker (other)"),
    ("sdk/workflow.py", "workflow API coroutines"),
    ("sdk/", "sdk (other)"),
    ("scripts/bench/workload.py", "workflow code"),
]


CALLERS = 3


def part_of(tb: tracemalloc.Traceback) -> tuple[str, str]:
    """The part an allocation counts for, and where: the innermost frames of this
    repository's code (innermost first, up to `CALLERS` of them)."""
    ours = [f for f in reversed(tb) if f.filename.startswith(ROOT) and "/.venv/" not in f.filename]
    if not ours:
        return "outside", tb[-1].filename if len(tb) else "?"
    where = " < ".join(f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}" for f in ours[:CALLERS])
    rel = os.path.relpath(ours[0].filename, ROOT)
    for prefix, part in PARTS:
        if rel.startswith(prefix):
            return part, where
    return "other", where


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def type_sizes() -> collections.Counter[str]:
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        sizes[type(obj).__name__] += sys.getsizeof(obj)
        sizes["#" + type(obj).__name__] += 1
    return sizes


async def history_lengths(client: Client, ids: list[str]) -> list[int]:
    pipe = client.redis.pipeline(transaction=False)
    for wf in ids:
        pipe.xlen(client.keys.history(wf))
    return list(await pipe.execute())


async def settled(client: Client, ids: list[str], target: int, quiet: float) -> None:
    """Until every history has about `target` events or more (0: any) and none grew for
    `quiet` seconds: the runs are parked (waiting for a signal or an activity). About:
    gathered activities' completions fall into workflow tasks differently run by run,
    so two runs of one shape may park a WorkflowTaskCompleted or two apart (607 and 608
    events for `fleet-pad-300`; waiting for 608 waited for ever)."""
    target = int(target * 0.95)
    last: list[int] = []
    since = time.monotonic()
    deadline = since + 900
    while time.monotonic() < deadline:
        lens = await history_lengths(client, ids)
        if lens != last or min(lens) < target:
            last, since = lens, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("runs did not park")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    run_fn, wf_args, signal, workflows_only = SHAPES[args.shape]
    redis.Redis.from_url(args.url).flushall()
    client = await Client.connect(args.url, prefix="cm", max_connections=64)
    worker = Worker(
        client, task_queue=TASK_QUEUE, workflows=workload.WORKFLOWS,
        activities=[] if workflows_only else workload.ACTIVITIES,
        no_remote_activities=workflows_only, max_cached_workflows=args.max_cached,
    )
    sem = asyncio.Semaphore(32)

    async def start(wf_id: str) -> None:
        async with sem:
            h = await client.start_workflow(run_fn, args=wf_args, id=wf_id, task_queue=TASK_QUEUE)
            if signal is not None:
                await h.signal(signal[0], *signal[1])

    target = 0

    async def batch(ids: list[str]) -> None:
        await asyncio.gather(*(start(i) for i in ids))
        await settled(client, ids, target, 1.0)

    async def quiet(run: Callable[[], Awaitable[None]]) -> None:
        await run()
        # Twice: a machine dropped with a pending task (replaced by a replay's) lives
        # through one collection (the task's __del__ reports it to its loop).
        gc.collect()
        gc.collect()

    out: dict[str, Any] = {"shape": args.shape, "n": args.n, "max_cached": args.max_cached}
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        # One run alone, parked for good, gives the history length all must reach.
        await batch(["first"])
        await settled(client, ["first"], 0, 3.0)
        target = (await history_lengths(client, ["first"]))[0]
        warm = [f"warm-{i}" for i in range(args.warm)]
        await quiet(lambda: batch(warm))
        cached0 = len(worker.cache)
        if args.trace:
            tracemalloc.start(30)
        await quiet(lambda: batch([f"warm2-{i}" for i in range(args.warm)]))
        rss0, types0 = rss_bytes(), type_sizes()
        snap0 = tracemalloc.take_snapshot() if args.trace else None
        ids = [f"run-{i}" for i in range(args.n)]
        await quiet(lambda: batch(ids))
        snap1 = tracemalloc.take_snapshot() if args.trace else None
        rss1, types1 = rss_bytes(), type_sizes()
        lens = await history_lengths(client, ids)
        out["events"] = sum(lens) / len(lens)
        out["cached_growth"] = len(worker.cache) - cached0
        out["rss_bytes_per_run"] = (rss1 - rss0) / args.n
        if snap0 is not None and snap1 is not None:
            tracemalloc.stop()
            parts: collections.Counter[str] = collections.Counter()
            lines: collections.Counter[str] = collections.Counter()
            for stat in snap1.compare_to(snap0, "traceback"):
                part, where = part_of(stat.traceback)
                parts[part] += stat.size_diff
                lines[where] += stat.size_diff
            out["traced_bytes_per_run"] = sum(parts.values()) / args.n
            out["parts"] = {k: round(v / args.n) for k, v in parts.most_common()}
            out["lines"] = {k: round(v / args.n) for k, v in lines.most_common(args.top)}
            grown = types1 - types0
            top = [k for k, _ in grown.most_common() if not k.startswith("#")][: args.top]
            out["machines_per_run"] = round(grown["#WorkflowMachine"] / args.n, 2)
            out["types"] = {k: [round(grown["#" + k] / args.n, 2), round(grown[k] / args.n)]
                            for k in top}
        tg.cancel_scope.cancel()
    await client.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="a private server (flushed)")
    p.add_argument("--shape", default=None, help="one shape, in this process (else all)")
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    p.add_argument("-n", type=int, default=300, help="runs measured")
    p.add_argument("--warm", type=int, default=20)
    p.add_argument("--max-cached", type=int, default=10000)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()
    if args.shape is not None:
        print(json.dumps(asyncio.run(measure(args))), flush=True)
        return
    for shape in args.shapes.split(","):
        row: dict[str, Any] = {}
        for trace in (False, True):
            cmd = [sys.executable, "-m", "scripts.bench.cache_memory", "--url", args.url,
                   "--shape", shape, "-n", str(args.n), "--warm", str(args.warm),
                   "--max-cached", str(args.max_cached), "--top", str(args.top)]
            done = subprocess.run(cmd + (["--trace"] if trace else []), check=True,
                                  capture_output=True, text=True)
            one = json.loads(done.stdout.strip().splitlines()[-1])
            if trace:
                one["traced_cached_growth"] = one.pop("cached_growth")
                one.pop("rss_bytes_per_run")  # tracemalloc's own memory in it
            row.update(one)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
