"""arq (a plain Redis job queue, not durable execution): the floor of a queue.

A "workflow" is a chain of 3 jobs, each enqueueing the next; the last one pushes to a
per-chain list that the driver waits on (BLPOP) and counts. arq polls its queue (no
blocking read): poll_delay is lowered from its 0.5 s default to 5 ms, else each step
would wait up to half a second. Runs in .bench-venv/arq.

    python scripts/bench/peers/arq_peer.py --redis-url URL      driver (prints JSON)
    python scripts/bench/peers/arq_peer.py --worker --redis-url URL
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import arq
from arq.connections import RedisSettings, create_pool
from arq.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
import common

STEPS = 3
POLL_DELAY = 0.005


async def step(ctx: dict[str, Any], chain: str, k: int) -> None:
    redis = ctx["redis"]
    if k < STEPS:
        await redis.enqueue_job("step", chain, k + 1)
    else:
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(f"done:{chain}", 1)
        pipe.expire(f"done:{chain}", 60)
        pipe.incr("done_count")
        await pipe.execute()


def run_worker(url: str) -> None:
    worker = Worker(
        functions=[step],
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=100,
        poll_delay=POLL_DELAY,
        keep_result=0,
        handle_signals=True,
    )
    worker.run()


def start_workers(url: str, n: int) -> list[subprocess.Popen[bytes]]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--redis-url", url],
            stdout=subprocess.DEVNULL,
            stderr=sys.stderr,
        )
        for _ in range(n)
    ]
    time.sleep(1.5)
    return procs


async def throughput(url: str, n: int) -> float:
    pool = await create_pool(RedisSettings.from_dsn(url))
    await pool.set("done_count", 0)
    sem = asyncio.Semaphore(64)

    async def start(i: int) -> None:
        async with sem:
            await pool.enqueue_job("step", f"tp{i}", 1)

    t0 = time.monotonic()
    await asyncio.gather(*(start(i) for i in range(n)))
    while int(await pool.get("done_count") or 0) < n:
        if time.monotonic() - t0 > 600:
            raise TimeoutError("arq throughput run did not finish")
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - t0
    await pool.aclose()
    return n / elapsed


async def latency(url: str, n: int, warmup: int = 20) -> dict[str, float]:
    pool = await create_pool(RedisSettings.from_dsn(url))
    samples = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        await pool.enqueue_job("step", f"lat{i}", 1)
        await pool.blpop([f"done:lat{i}"], timeout=30)
        if i >= warmup:
            samples.append(time.perf_counter() - t0)
    await pool.aclose()
    return common.summary_ms(samples)


def main() -> None:
    if "--worker" in sys.argv:
        sys.argv.remove("--worker")
        run_worker(common.parse_args().redis_url)
        return
    args = common.parse_args()
    url = args.redis_url
    result: dict[str, Any] = {"status": "ok", "version": arq.VERSION, "durable": False}
    for workers in (1, 2):
        procs = start_workers(url, workers)
        try:
            key = "throughput_wf_s" if workers == 1 else "throughput_2_wf_s"
            result[key] = asyncio.run(throughput(url, args.workflows))
            if workers == 1:
                result["latency"] = asyncio.run(latency(url, args.latency))
        finally:
            for p in procs:
                common.stop(p)
    result["notes"] = (
        f"chain of {STEPS} jobs, each enqueues the next; max_jobs 100, poll_delay "
        f"{POLL_DELAY * 1000:.0f} ms (arq polls; default 500 ms); no signals; not durable"
    )
    common.emit(result)


if __name__ == "__main__":
    main()
