"""How late timers fire with K idle-ish workers: from a timer's due time to the event
that its firing wrote, both on the server's clock (event timestamps), so neither the
workers' clocks nor polling add error.

    python -m scripts.bench.timer_latency --url redis://127.0.0.1:6421
    python -m scripts.bench.timer_latency --url redis://127.0.0.1:6421 --workers 1,20

Run from the repository root, against a private server. For each worker count K it
starts K processes of `python -m sdk.cli.main worker scripts.bench.timer_workflows` in
a fresh namespace, waits until all K have beaten, then starts `--workflows` Sleeper
workflows (each sleeps `--sleep` seconds `--times` times: timers added by a worker's
own workflow task, which wake that worker) and as many Forever workflows with a run
timeout drawn in [1, 3] s (a timer the client adds: only a scan of its shard by some
worker fires it, within the timer loop's longest wait). It reports p50, p99 and the
worst lateness of each kind, in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta

import anyio
import redis

from engine import events as ev
from scripts.bench.idle import REPO, stop_workers, wait_beating
from scripts.bench.timer_workflows import Forever, Sleeper
from scripts.chaos.common import percentile
from sdk import Client, WorkflowFailureError

TASK_QUEUE = "orders"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.timer_latency",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--workers", default="1,20", help="comma list of worker counts")
    p.add_argument("--workflows", type=int, default=20, help="of each kind")
    p.add_argument("--sleep", type=float, default=0.7, help="Sleeper's timer, seconds")
    p.add_argument("--times", type=int, default=5, help="Sleeper's timers each")
    return p.parse_args(argv)


def start_workers(url: str, prefix: str, count: int) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "sdk.cli.main", "worker", "scripts.bench.timer_workflows",
           "--task-queue", TASK_QUEUE, "--redis-url", url, "--prefix", prefix,
           "--log-level", "WARNING"]
    return [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
            for _ in range(count)]


async def lateness(client: Client, args: argparse.Namespace) -> tuple[list[int], list[int]]:
    rng = random.Random(1)
    sleepers = []
    for i in range(args.workflows):
        sleepers.append(await client.start_workflow(
            Sleeper.run, args.sleep, args.times, id=f"sleep-{i}", task_queue=TASK_QUEUE))
        await anyio.sleep(rng.uniform(0, 0.05))
    timeouts = {}
    for i in range(args.workflows):
        ms = rng.randint(1000, 3000)
        timeouts[f"forever-{i}"] = ms
        await client.start_workflow(Forever.run, id=f"forever-{i}", task_queue=TASK_QUEUE,
                                    run_timeout=timedelta(milliseconds=ms))
    with anyio.fail_after(120):
        for handle in sleepers:
            await handle.result()
        for wf_id in timeouts:
            with contextlib.suppress(WorkflowFailureError):
                await client.get_workflow_handle(wf_id).result()
    worker_late: list[int] = []
    for handle in sleepers:
        due: dict[int, int] = {}
        for _, e in await client.store.read_history(handle.id):
            if isinstance(e, ev.TimerStarted):
                due[e.timer_id] = e.timestamp + e.duration_ms
            elif isinstance(e, ev.TimerFired):
                worker_late.append(e.timestamp - due[e.timer_id])
    client_late: list[int] = []
    for wf_id, ms in timeouts.items():
        events = [e for _, e in await client.store.read_history(wf_id)]
        ended = [e for e in events if isinstance(e, ev.WorkflowExecutionTimedOut)]
        client_late.append(ended[0].timestamp - events[0].timestamp - ms)
    return worker_late, client_late


def summary(values: list[int]) -> str:
    return (f"{statistics.median(values):.0f} / {percentile(values, 99):.0f} / "
            f"{max(values)}")


async def measure(url: str, count: int, args: argparse.Namespace) -> tuple[str, str]:
    prefix = f"tl{uuid.uuid4().hex[:8]}"
    procs = start_workers(url, prefix, count)
    try:
        await anyio.to_thread.run_sync(wait_beating, redis.Redis.from_url(url), prefix, procs)
        await anyio.sleep(2.0)
        client = await Client.connect(url, prefix=prefix)
        try:
            worker_late, client_late = await lateness(client, args)
        finally:
            await client.close()
    finally:
        stop_workers(procs)
    return summary(worker_late), summary(client_late)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("| workers | worker-added timers late, ms (p50 / p99 / worst) "
          "| client-added timers late, ms (p50 / p99 / worst) |")
    print("|--:|--:|--:|")
    for k in [int(k) for k in args.workers.split(",") if k.strip()]:
        own, foreign = anyio.run(measure, args.url, k, args)
        print(f"| {k} | {own} | {foreign} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
