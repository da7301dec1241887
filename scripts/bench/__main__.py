"""Run the benchmark suite: `scripts/bench/run` (which sets up the peers' environments
and then runs `python -m scripts.bench` in the project's venv).

    scripts/bench/run                      everything; writes docs/benchmarks.md
    scripts/bench/run --quick              small counts, a smoke test (.bench-out/ only)
    scripts/bench/run --only throughput,latency --peers none
    scripts/bench/run --profile            profile the worker under the throughput load

Results go to .bench-out/results.json (raw) and the markdown table to stdout and to
docs/benchmarks.md (full runs). Absolute figures on a shared 2-core machine are noisy:
compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from functools import partial
from typing import Any

from scripts.bench import peer_runner, report, transport
from scripts.bench import redurable_bench as rb
from scripts.bench.servers import PrivateServer, redis_server_binary, valkey_binary
from scripts.bench.util import CODE, LOOP_ENV, OUT, REPO, loop_name, run_async

SECTIONS = (
    "transport",
    "throughput",
    "latency",
    "signals",
    "history",
    "memory",
    "durability",
    "valkey",
    "recovery",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench/run", description="redurable benchmarks")
    p.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    p.add_argument("--only", default="all", help=f"comma list of: {', '.join(SECTIONS)}")
    p.add_argument(
        "--peers",
        default="all",
        help=f"comma list of: {', '.join(peer_runner.PEERS)}; 'none' for no peer",
    )
    p.add_argument("--profile", action="store_true", help="profile the worker (see profile.py)")
    p.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    p.add_argument(
        "--repeat", type=int, default=3, help="rounds of each throughput variant (median)"
    )
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop of the driver and workers (auto: uvloop when installed, as the CLI)",
    )
    return p.parse_args(argv)


def _server() -> PrivateServer:
    binary = redis_server_binary()
    if binary is None:
        print("redis-server not found: using the embedded Valkey", file=sys.stderr)
        return PrivateServer(valkey_binary(), label="valkey")
    return PrivateServer(binary, label="redis")


def _section(
    results: dict[str, Any], name: str, fn: Callable[[], Coroutine[Any, Any, Any] | Any]
) -> None:
    print(f"== {name}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        value = fn()
        if asyncio.iscoroutine(value):
            value = run_async(value)
        results[name] = value
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"   {name}: {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)


def run_redurable(args: argparse.Namespace, only: set[str], results: dict[str, Any]) -> None:
    q = args.quick
    n_tp = 400 if q else 2000
    binary = redis_server_binary() or valkey_binary()
    with ExitStack() as servers:
        server = servers.enter_context(_server())
        results["server"] = server.version()
        if "transport" in only:
            _section(results, "transport", lambda: transport.floor(server, 200 if q else 1000))
        # Throughput variants, `--repeat` rounds of each, interleaved so that a noisy
        # moment of the shared machine does not land on one variant only.
        variants: list[tuple[str, PrivateServer, int, dict[str, str] | None, str | None]] = []
        if "throughput" in only:
            variants += [
                ("throughput_1", server, 1, None, None),
                ("throughput_2", server, 2, None, None),
            ]
            if loop_name() == "uvloop":
                variants.append(("throughput_1_asyncio", server, 1, {LOOP_ENV: "asyncio"}, None))
        if "valkey" in only:
            vk = servers.enter_context(PrivateServer(valkey_binary(), label="valkey"))
            results["valkey_server"] = vk.version()
            variants.append(("valkey_throughput_1", vk, 1, None, None))
        if "durability" in only:
            for fsync in ("everysec", "always"):
                aof = servers.enter_context(PrivateServer(binary, appendfsync=fsync))
                variants.append((f"aof_{fsync}", aof, 1, None, None))
                # durability="fsync" (WAITAOF after every transition) needs Redis 7.2+
                # or Valkey: measured on the embedded Valkey.
                vk_aof = servers.enter_context(
                    PrivateServer(valkey_binary(), appendfsync=fsync, label="valkey")
                )
                variants.append((f"aof_{fsync}_wait", vk_aof, 1, None, "fsync"))
            # durability="replicas:1" (WAIT 1 after every transition), one local replica.
            primary = servers.enter_context(PrivateServer(binary))
            servers.enter_context(PrivateServer(binary, replica_of=primary))
            variants.append(("replicas_1_wait", primary, 1, None, "replicas:1"))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in variants}
        if "durability" in only:
            results["durability_server"] = vk_aof.version()
        for _ in range(args.repeat):
            for name, srv, workers, env, durability in variants:
                one: dict[str, Any] = {}
                run = partial(
                    rb.throughput, srv, workers, n_tp, worker_env=env, durability=durability
                )
                _section(one, name, run)
                runs[name].append(one[name])
        for name, done in runs.items():
            results[name] = _median_run(done)
        if "latency" in only:
            _section(results, "latency", lambda: rb.latency(server, 50 if q else 200))
        if "valkey" in only:
            _section(results, "valkey_latency", lambda: rb.latency(vk, 50 if q else 200))
        if "signals" in only:
            _section(results, "signals", lambda: rb.signals(server, 50 if q else 200))
        if "history" in only:
            sizes = (10, 100, 1000) if q else (10, 100, 1000, 5000)
            _section(results, "history", lambda: rb.history(server, sizes))
        if "memory" in only:
            _section(results, "memory", lambda: rb.memory(server, 2000 if q else 10000))
    if "recovery" in only:
        _section(results, "recovery", lambda: recovery(args))


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median workflows/s (all of them listed in it)."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    median = sorted(good, key=lambda r: float(r["wf_per_s"]))[(len(good) - 1) // 2]
    return {**median, "runs_wf_per_s": [r["wf_per_s"] for r in good]}


def recovery(args: argparse.Namespace) -> dict[str, Any]:
    """Kill -9 of a worker with work in flight: reuses scripts/recovery.py (its
    `measure`), on a private server, at the Worker's default liveness timeout (5 s)
    and at 1 s. The recovery time of a workflow is from the kill to its next event."""
    try:
        from scripts import recovery as rec
    except ImportError as exc:
        return {"error": f"scripts/recovery.py cannot be used: {exc}"}
    kills = 5 if args.quick else 20
    out: dict[str, Any] = {"kills": kills}
    with _server() as server:
        for liveness in (5.0, 1.0):
            ns = rec.parse_args(["--kills", str(kills), "--liveness", str(liveness)])
            r = run_async(rec.measure(server.url, liveness, ns))
            samples = sorted(r.samples)
            out[f"liveness {liveness:g} s"] = {
                "kills": r.kills,
                "in_flight": len(samples),
                "empty_kills": r.empty_kills,
                "p50_s": samples[len(samples) // 2] / 1000 if samples else None,
                "p99_s": r.percentile(0.99) / 1000 if samples else None,
                "max_s": samples[-1] / 1000 if samples else None,
            }
    default = out["liveness 5 s"]
    out["p99_s"] = default["p99_s"]
    out["command"] = f"python -m scripts.recovery --kills {kills} --liveness 5 --liveness 1"
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ[LOOP_ENV] = args.loop  # the workers inherit it
    os.chdir(CODE)
    OUT.mkdir(exist_ok=True)
    if args.profile:
        from scripts.bench import profile

        profile.main(quick=args.quick)
        return
    only = set(SECTIONS) if args.only == "all" else set(args.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections: {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {
        "meta": report.machine_info(args),
        "redurable": {},
        "peers": {},
    }
    t0 = time.monotonic()
    run_redurable(args, only, results["redurable"])
    peer_names = peer_runner.select(args.peers)
    for name in peer_names:
        print(f"== peer {name}", file=sys.stderr, flush=True)
        results["peers"][name] = peer_runner.run(name, quick=args.quick)
    results["meta"]["duration_s"] = time.monotonic() - t0
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
    markdown = report.render(results)
    print(markdown)
    full = not args.quick and args.only == "all" and args.peers == "all"
    target = REPO / "docs" / "benchmarks.md" if full and not args.no_docs else None
    report.write(markdown, target or OUT / "benchmarks.md")
    print(f"wrote {target or OUT / 'benchmarks.md'} and {OUT / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
