"""Restate: restate-server (the binary of the @restatedev/restate-server npm package,
under .bench-venv/node) and the restate-sdk Python SDK served by hypercorn. The same
3-step workflow as a Restate Workflow with three `ctx.run_typed` steps; signals as a
shared handler resolving a durable promise. The service is a subprocess (this file
with --serve). Runs in .bench-venv/restate.
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

import httpx
import restate

sys.path.insert(0, str(Path(__file__).parent))
import common

# The repository (the suite runs this file from a snapshot under .bench-out/).
REPO = Path(os.environ.get("REDURABLE_BENCH_REPO") or Path(__file__).resolve().parents[3])
SERVER = (
    REPO / ".bench-venv/node/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
)

steps3 = restate.Workflow("Steps3")
gate = restate.Workflow("Gate")


async def noop(x: int) -> int:
    return x + 1


@steps3.main()
async def run(ctx: restate.WorkflowContext, req: int) -> int:
    x = req
    for i in range(3):
        x = await ctx.run_typed(f"s{i}", noop, restate.RunOptions(), x)
    return x


@gate.main(name="run")
async def gate_run(ctx: restate.WorkflowContext, req: int) -> int:
    await ctx.promise("go").value()
    return time.monotonic_ns()  # when the workflow's code saw the signal


@gate.handler()
async def go(ctx: restate.WorkflowSharedContext, req: int) -> None:
    await ctx.promise("go").resolve(req)


app = restate.app(services=[steps3, gate])


def serve(port: int) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    config.accesslog = None
    asyncio.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


async def throughput(ingress: str, n: int, tag: str) -> float:
    sem = asyncio.Semaphore(64)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=ingress, timeout=120, limits=limits) as http:

        async def start(i: int) -> None:
            async with sem:
                r = await http.post(f"/Steps3/{tag}-{i}/run/send", json=0)
                r.raise_for_status()

        async def attach(i: int) -> None:
            async with sem:
                r = await http.get(f"/restate/workflow/Steps3/{tag}-{i}/attach")
                r.raise_for_status()

        t0 = time.monotonic()
        await asyncio.gather(*(start(i) for i in range(n)))
        await asyncio.gather(*(attach(i) for i in range(n)))
        return n / (time.monotonic() - t0)


async def latency(ingress: str, n: int, warmup: int = 10) -> dict[str, float]:
    samples = []
    async with httpx.AsyncClient(base_url=ingress, timeout=60) as http:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            r = await http.post(f"/Steps3/lat-{i}/run", json=0)
            r.raise_for_status()
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
    return common.summary_ms(samples)


async def signals(ingress: str, n: int) -> dict[str, Any]:
    observed, to_result = [], []
    async with httpx.AsyncClient(base_url=ingress, timeout=60) as http:
        for i in range(n):
            (await http.post(f"/Gate/g-{i}/run/send", json=0)).raise_for_status()
            await asyncio.sleep(0.05)  # let it reach the promise
            t0 = time.monotonic_ns()
            (await http.post(f"/Gate/g-{i}/go", json=1)).raise_for_status()
            r = await http.get(f"/restate/workflow/Gate/g-{i}/attach")
            r.raise_for_status()
            to_result.append((time.monotonic_ns() - t0) / 1e9)
            observed.append((int(r.json()) - t0) / 1e9)
    return {"signal": common.summary_ms(observed), "signal_to_result": common.summary_ms(to_result)}


def start_service(port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
    )
    common.wait_port(port, 30, p)
    return p


def main() -> None:
    if "--serve" in sys.argv:
        serve(int(sys.argv[sys.argv.index("--serve") + 1]))
        return
    args = common.parse_args()
    if not SERVER.exists():
        common.emit({"status": "not installed", "reason": f"no {SERVER.name} under .bench-venv"})
        return
    ingress_port, admin_port, node_port = (common.free_port() for _ in range(3))
    base = Path(args.workdir) / "restate-data"
    subprocess.run(["rm", "-rf", str(base)], check=False)
    env = {
        **os.environ,
        "RESTATE_BASE_DIR": str(base),
        "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress_port}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin_port}",
        "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node_port}",
        "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node_port}",
        "RESTATE_LISTEN_MODE": "tcp",
        "RESTATE_LOG_FILTER": "warn",
    }
    server = subprocess.Popen(
        [str(SERVER), "--no-logo"], env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr
    )
    result: dict[str, Any] = {
        "status": "ok",
        "version": f"restate-sdk {version('restate-sdk')}",
        "durable": True,
    }
    services: list[subprocess.Popen[bytes]] = []
    try:
        common.wait_port(admin_port, 60, server)
        common.wait_port(ingress_port, 60, server)
        out = subprocess.run([str(SERVER), "--version"], capture_output=True, text=True).stdout
        result["server"] = out.strip()
        ingress = f"http://127.0.0.1:{ingress_port}"
        port = common.free_port()
        services.append(start_service(port))
        r = httpx.post(
            f"http://127.0.0.1:{admin_port}/deployments",
            json={"uri": f"http://127.0.0.1:{port}"},
            timeout=30,
        )
        r.raise_for_status()
        result["throughput_wf_s"] = asyncio.run(throughput(ingress, args.workflows, "tp1"))
        result["latency"] = asyncio.run(latency(ingress, args.latency))
        result.update(asyncio.run(signals(ingress, args.signals)))
        result["notes"] = (
            "single-node restate-server, default config (its own RocksDB + log under the "
            "work dir); service on hypercorn; 3 ctx.run steps; signal = shared handler "
            "resolving a durable promise; one service process (a second one would be a second "
            "deployment behind a load balancer: not measured)"
        )
    finally:
        for s in services:
            common.stop(s)
        common.stop(server)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    common.emit(result)


if __name__ == "__main__":
    main()
