"""What each of an idle worker's loops costs per wake-up: CPU (time.process_time) and
wall time per call of each one's body, in this process, against a private server.

    python -m scripts.bench.idle_parts --url redis://127.0.0.1:6480
    python -m scripts.bench.idle_parts --url redis://127.0.0.1:6480 --calls 500

Run from the repository root. It builds a Worker of the order example
(sdk/examples/order.py, metrics on, not run) in a fresh namespace and calls, `--calls`
times each: an empty blocking read of each poller's streams (BLOCK 1 ms, which the
server ends at its next timeout check: the wall time is not the read's), the beat, the
touch and idle-time claim that follow it, a death-watch check, a timer scan, a
scheduler pass and the metrics' lag poll; and an anyio sleep of 1 ms (a wake-up of the
event loop alone). Multiply by how often each runs (docs/benchmarks.md "Idle reads")
for its share of the idle CPU that `scripts.bench.idle` measures from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

import sdk.examples.order as order
from engine.handoff import ensure_outbox_groups
from sdk._metrics import new_registry
from sdk.cli.main import discover
from sdk.client.client import Client
from sdk.worker.worker import Worker


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.idle_parts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="a private server")
    p.add_argument("--calls", type=int, default=200, help="calls of each part")
    return p.parse_args(argv)


async def per_call(name: str, fn: Callable[[], Awaitable[Any]], calls: int) -> None:
    await fn()  # connections made, caches warm
    cpu0, wall0 = time.process_time(), time.monotonic()
    for _ in range(calls):
        await fn()
    cpu = (time.process_time() - cpu0) / calls * 1000
    wall = (time.monotonic() - wall0) / calls * 1000
    print(f"| {name} | {cpu:.3f} | {wall:.3f} |")


async def measure(url: str, calls: int) -> None:
    client = await Client.connect(url, prefix=f"parts{uuid.uuid4().hex[:8]}")
    workflows, activities = discover(order)
    worker = Worker(client, task_queue="orders", workflows=workflows, activities=activities,
                    metrics_registry=new_registry(), handle_signals=False)
    plumbing, store, live = worker._plumbing, client.store, worker.liveness
    await store.ensure_groups("orders", worker.sticky)
    await ensure_outbox_groups(store)
    assert worker.metrics is not None

    def read(streams: list[str], count: int) -> Callable[[], Awaitable[Any]]:
        return lambda: store.read_group(plumbing.identity, streams, count, 1)

    print("| part (one wake-up) | CPU ms/call | wall ms/call |")
    print("|---|--:|--:|")
    try:
        await per_call("event loop wake-up (anyio.sleep(0.001))",
                       lambda: anyio.sleep(0.001), calls)
        await per_call("empty read, workflow tasks (shared + sticky + timer wake streams)",
                       read(worker._workflow_tasks._read_streams(), 8), calls)
        await per_call("empty read, activity tasks", read(plumbing.activity_streams, 8), calls)
        await per_call("empty read, queries",
                       read([plumbing.query_stream, *plumbing.sticky_query_streams], 16),
                       calls)
        await per_call("empty read, hand-off outboxes", read(worker.handoffs.streams, 64),
                       calls)
        await per_call("TIME round trip", client.redis.time, calls)
        await per_call("beat", live.beat, calls)
        await per_call("touch of held entries (none held)", live.touch_in_flight, calls)
        await per_call("idle-time claim (nothing pending)", live.claim_from_dead, calls)
        await per_call("death-watch check", live.death_watch.find_dead, calls)
        await per_call("timer scan (rd_fire_timers, every shard)", store.fire_timers, calls)
        await per_call("scheduler pass", worker.scheduler.run_once, calls)
        await per_call("metrics lag poll (XINFO GROUPS)", worker.metrics.poll_lag, calls)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(measure(args.url, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
