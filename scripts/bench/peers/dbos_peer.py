"""DBOS Transact on the machine's PostgreSQL (127.0.0.1:5432, trust auth): the same
3-step workflow as async @DBOS.workflow / @DBOS.step, run in-process (DBOS has no
separate worker: the application process executes its workflows), and through a DBOS
queue; signals as DBOS.send / DBOS.recv. Uses its own system database, dropped after.
Runs in .bench-venv/dbos.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig, Queue

sys.path.insert(0, str(Path(__file__).parent))
import common

PG = "postgresql://postgres@127.0.0.1:5432"
QUEUE: dict[str, Queue] = {}


@DBOS.step()
async def noop(x: int) -> int:
    return x + 1


@DBOS.workflow()
async def steps3() -> int:
    x = 0
    for _ in range(3):
        x = await noop(x)
    return x


@DBOS.workflow()
async def gate() -> int:
    await DBOS.recv_async("go", timeout_seconds=60)
    return time.monotonic_ns()  # when the workflow's code saw the message


async def throughput(n: int, via_queue: bool) -> float:
    sem = asyncio.Semaphore(64)

    async def start(i: int) -> Any:
        async with sem:
            if via_queue:
                return await QUEUE["q"].enqueue_async(steps3)
            return await DBOS.start_workflow_async(steps3)

    t0 = time.monotonic()
    handles = await asyncio.gather(*(start(i) for i in range(n)))
    await asyncio.gather(*(h.get_result() for h in handles))
    return n / (time.monotonic() - t0)


async def latency(n: int, warmup: int = 10) -> dict[str, float]:
    samples = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        handle = await DBOS.start_workflow_async(steps3)
        await handle.get_result()
        if i >= warmup:
            samples.append(time.perf_counter() - t0)
    return common.summary_ms(samples)


async def signals(n: int) -> dict[str, Any]:
    observed, to_result = [], []
    for _ in range(n):
        handle = await DBOS.start_workflow_async(gate)
        await asyncio.sleep(0.02)  # let it reach recv
        t0 = time.monotonic_ns()
        await DBOS.send_async(handle.get_workflow_id(), "go", "go")
        seen = await handle.get_result()
        to_result.append((time.monotonic_ns() - t0) / 1e9)
        observed.append((seen - t0) / 1e9)
    return {"signal": common.summary_ms(observed), "signal_to_result": common.summary_ms(to_result)}


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-q", "-c", sql], check=False,
                   capture_output=True)


async def run_all(args: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    result["throughput_wf_s"] = await throughput(args.workflows, via_queue=False)
    result["throughput_queue_wf_s"] = await throughput(args.workflows, via_queue=True)
    result["latency"] = await latency(args.latency)
    result.update(await signals(args.signals))
    return result


def main() -> None:
    args = common.parse_args()
    db = f"dbos_bench_{uuid.uuid4().hex[:8]}"
    config: DBOSConfig = {
        "name": "redurable-bench",
        "system_database_url": f"{PG}/{db}",
        "log_level": "WARNING",
        "sys_db_pool_size": 40,
    }
    result: dict[str, Any] = {"status": "ok", "version": version("dbos"), "durable": True}
    server = subprocess.run(["psql", f"{PG}/postgres", "-tAc", "show server_version"],
                            capture_output=True, text=True).stdout.strip()
    result["server"] = f"PostgreSQL {server.split()[0] if server else '?'}"
    try:
        DBOS(config=config)
        DBOS.launch()
        QUEUE["q"] = DBOS.register_queue("bench", worker_concurrency=100,
                                         polling_interval_sec=0.05)
        result.update(asyncio.run(run_all(args)))
        result["notes"] = (
            "in-process workflows (DBOS runs them in the application process; a second "
            f"process was not measured); through a DBOS queue (polled every 50 ms, 100 per "
            f"process): {result['throughput_queue_wf_s']:.0f} wf/s; signal = DBOS.send -> "
            "DBOS.recv"
        )
    finally:
        DBOS.destroy()
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    common.emit(result)


if __name__ == "__main__":
    main()
