"""redflow (durable workflows on Redis): the same 3-step workflow with `ctx.step.run`,
and signals as `step.wait_for_event` + `client.emit_event(correlation_key=...)`.
Runs in .bench-venv/redflow; the worker is a subprocess (this file with --worker).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from redflow import (
    StartWorkerOptions,
    create_client,
    set_default_client,
    start_worker,
    workflow,
)
from redflow._client.queries_runs import wait_for_result
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent))
import common

#: Slots per worker. Best of 1, 2, 4, 10 and 100 on this machine (87, 33, 31, 22 and
#: ~2 wf/s): with more slots the worker spends its time moving runs between its lists.
CONCURRENCY = 1


async def noop(x: int, *, signal: Any = None) -> int:
    return x + 1


@workflow("bench-steps3", queue="bench")
async def steps3(ctx: Any) -> int:
    x = 0
    for i in range(3):
        x = await ctx.step.run(f"s{i}", noop, x)
    return x


async def now_ns(*, signal: Any = None) -> int:
    return time.monotonic_ns()


@workflow("bench-gate", queue="bench")
async def gate(ctx: Any) -> int:
    await ctx.step.wait_for_event("wait", "bench.go", ctx.input["key"], "5m")
    return int(await ctx.step.run("seen", now_ns))  # when the code saw the event


async def serve(url: str) -> None:
    worker = await start_worker(
        StartWorkerOptions(app="bench", url=url, queues=["bench"], concurrency=CONCURRENCY)
    )
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await worker.stop()


def start_workers(url: str, n: int) -> list[subprocess.Popen[str]]:
    procs = []
    for _ in range(n):
        p = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--redis-url", url],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            for q in [*procs, p]:  # not left running, nor their pipes open
                common.stop(q)
            raise RuntimeError("redflow worker did not start")
        procs.append(p)
    time.sleep(0.5)
    return procs


def connect(url: str) -> Any:
    """A client on the private server, also the default that `workflow.run` uses."""
    client = create_client(redis=Redis.from_url(url, max_connections=512), app="bench")
    set_default_client(client)
    return client


async def throughput(url: str, n: int, tag: str) -> float:
    client = connect(url)
    sem = asyncio.Semaphore(64)
    before = (await client.get_stats())["by_status"].get("succeeded", 0)

    async def start(i: int) -> None:
        async with sem:
            await steps3.run({"i": i}, idempotency_key=f"{tag}-{i}")

    t0 = time.monotonic()
    await asyncio.gather(*(start(i) for i in range(n)))
    while True:
        stats = await client.get_stats()
        if stats["by_status"].get("succeeded", 0) - before >= n:
            break
        if stats["by_status"].get("failed", 0):
            raise RuntimeError(f"redflow runs failed: {stats['by_status']}")
        if time.monotonic() - t0 > 600:
            raise TimeoutError(f"redflow throughput run did not finish: {stats['by_status']}")
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - t0
    await client.close()
    return n / elapsed


async def result(client: Any, run_id: str) -> Any:
    """handle.result() polls every 250 ms: poll every 1 ms instead."""
    return await wait_for_result(client, run_id, timeout_ms=30_000, poll_ms=1)


async def latency(url: str, n: int, warmup: int = 10) -> dict[str, float]:
    client = connect(url)
    samples = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        handle = await steps3.run({"i": i}, idempotency_key=f"lat-{i}")
        await result(client, handle.id)
        if i >= warmup:
            samples.append(time.perf_counter() - t0)
    await client.close()
    return common.summary_ms(samples)


async def signals(url: str, n: int) -> dict[str, Any]:
    """Signal -> the code after wait_for_event ran (its "seen" step's output, polled
    every 1 ms), and signal -> result."""
    client = connect(url)
    observed, to_result = [], []
    for i in range(n):
        key = f"k{i}"
        handle = await gate.run({"key": key}, idempotency_key=f"gate-{i}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the run waits for the event
            if any(s.get("name") == "wait" for s in await client.get_run_steps(handle.id)):
                break
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.01)
        t0 = time.monotonic_ns()
        await client.emit_event("bench.go", {"i": i}, correlation_key=key)
        seen = None
        deadline = time.monotonic() + 30
        while seen is None and time.monotonic() < deadline:
            for s in await client.get_run_steps(handle.id):
                if s.get("name") == "seen" and s.get("status") == "succeeded":
                    seen = int(s["output"])
            await asyncio.sleep(0.001)
        if seen is None:
            raise TimeoutError("redflow: the signalled run did not go on")
        observed.append((seen - t0) / 1e9)
        await result(client, handle.id)
        to_result.append((time.monotonic_ns() - t0) / 1e9)
    await client.close()
    return {
        "signal": common.summary_ms(observed),
        "signal_to_result": common.summary_ms(to_result),
    }


def main() -> None:
    if "--worker" in sys.argv:
        sys.argv.remove("--worker")
        asyncio.run(serve(common.parse_args().redis_url))
        return
    args = common.parse_args()
    url = args.redis_url
    os.environ["REDIS_URL"] = url  # whatever redflow connects to by default: ours
    result: dict[str, Any] = {"status": "ok", "version": version("redflow"), "durable": True}
    procs = start_workers(url, 1)
    try:
        result["throughput_wf_s"] = asyncio.run(throughput(url, args.workflows, "tp1"))
        result["latency"] = asyncio.run(latency(url, args.latency))
        result.update(asyncio.run(signals(url, args.signals)))
    finally:
        for p in procs:
            common.stop(p)
    procs = start_workers(url, 2)
    try:
        result["throughput_2_wf_s"] = asyncio.run(throughput(url, args.workflows, "tp2"))
    finally:
        for p in procs:
            common.stop(p)
    result["notes"] = (
        f"worker concurrency {CONCURRENCY} (its best here: 10 slots gave 22 wf/s, 100 about "
        "2 wf/s, the worker busy re-queueing runs); signal = step.wait_for_event + "
        "client.emit_event(correlation_key); results polled every 1 ms (handle.result "
        "polls every 250 ms); with 100 slots, a run resumed by an event also finished only "
        "~5 s after it went on (the worker's lease_ms)"
    )
    common.emit(result)


if __name__ == "__main__":
    main()
