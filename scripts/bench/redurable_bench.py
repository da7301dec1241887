"""The redurable side of the suite: throughput, latency, signals, history length, cost per
step, memory and durability, each against a private server (see servers.py), workers
in subprocesses (worker.py) and the client in this process."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from typing import Any

from engine.store import Store
from scripts.bench import counters
from scripts.bench.peers.common import cpu_seconds, percentile, summary_ms
from scripts.bench.servers import PrivateServer
from scripts.bench.util import (
    LOOP_ENV,
    WorkerProcess,
    loop_name,
    rss_kib,
    start_sampler,
    stop_sampler,
)
from scripts.bench.worker import TASK_QUEUE
from scripts.bench.workload import Gate, Probe, Stamps, Steps
from sdk import Client, WorkflowExecutionStatus
from sdk.worker.workflow_runner import new_machine

STEPS = 3


def new_prefix(tag: str) -> str:
    return f"b{tag}{uuid.uuid4().hex[:6]}"


async def _connect(url: str, prefix: str, durability: str | None = None) -> Client:
    counters.install()
    return await Client.connect(
        url, prefix=prefix, max_connections=256, durability=durability
    )


async def _count_status(client: Client, status: WorkflowExecutionStatus) -> int:
    pipe = client.redis.pipeline(transaction=False)
    for shard in range(client.keys.shards):
        pipe.zcard(client.keys.index_status(shard, status))
    return sum(int(n) for n in await pipe.execute())


async def _wait_closed(client: Client, n: int, timeout: float, stall: float = 20.0) -> None:
    """Until `n` workflows completed; fails on a failed workflow, or when none
    completes for `stall` seconds (a broken worker), or after `timeout`."""
    deadline = time.monotonic() + timeout
    last, progress_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        done = await _count_status(client, WorkflowExecutionStatus.COMPLETED)
        if done >= n:
            return
        if done != last:
            last, progress_at = done, time.monotonic()
        elif time.monotonic() - progress_at > stall:
            break
        failed = await _count_status(client, WorkflowExecutionStatus.FAILED)
        if failed:
            raise RuntimeError(f"{failed} benchmark workflows failed")
        await asyncio.sleep(0.01)
    raise TimeoutError(f"only {last}/{n} completed (see .bench-out/logs/)")


async def _server_span_ms(client: Client, ids: Sequence[str]) -> tuple[int, int]:
    """(first start_time, last close_time) in the server's clock, ms."""
    pipe = client.redis.pipeline(transaction=False)
    for wf_id in ids:
        pipe.hmget(client.keys.workflow(wf_id), "start_time", "close_time")
    rows = await pipe.execute()
    return min(int(r[0]) for r in rows), max(int(r[1]) for r in rows)


async def throughput(
    server: PrivateServer,
    workers: int,
    n: int = 2000,
    *,
    concurrency: int = 64,
    worker_args: Sequence[str] = (),
    wrapper: Sequence[str] = (),
    attach: Sequence[str] = (),
    worker_env: dict[str, str] | None = None,
    durability: str | None = None,
) -> dict[str, Any]:
    """`n` workflows of 3 steps; the clock runs from the first start to the last close.
    `attach`: a profiler command that takes `--pid PID`, run on the (first) worker from
    just before the first start until the last workflow closed (then sent SIGINT)."""
    prefix = new_prefix("tp")
    if durability:
        worker_args = [*worker_args, "--durability", durability]
    procs = [
        WorkerProcess(server.url, prefix, extra=worker_args, wrapper=wrapper, env=worker_env)
        for _ in range(workers)
    ]
    try:
        for p in procs:
            p.wait_ready()
        client = await _connect(server.url, prefix, durability)
        try:
            before = [p.counters() for p in procs]
            server.reset_stats()
            server_pid = server.process.pid if server.process else 0
            cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
            srv0, me0 = cpu_seconds(server_pid), time.process_time()
            client0 = counters.snapshot()
            sampler = None
            if attach:
                sampler = start_sampler(attach, procs[0].pid)
                await asyncio.sleep(1.0)  # py-spy needs a moment to attach
            ids = [f"tp-{i}" for i in range(n)]
            sem = asyncio.Semaphore(concurrency)

            async def start(wf_id: str) -> None:
                async with sem:
                    await client.start_workflow(Steps.run, STEPS, id=wf_id, task_queue=TASK_QUEUE)

            t0 = time.monotonic()
            await asyncio.gather(*(start(i) for i in ids))
            enqueued = time.monotonic() - t0
            await _wait_closed(client, n, timeout=max(120.0, n / 5))
            wall = time.monotonic() - t0
            if sampler is not None:
                stop_sampler(sampler)
            stats = server.commandstats()
            srv_cpu = cpu_seconds(server_pid) - srv0
            worker_cpu = sum(cpu_seconds(p.pid) - cpu0[p.pid] for p in procs)
            driver_cpu = time.process_time() - me0
            client1 = counters.snapshot()
            after = [p.counters() for p in procs]
            first, last = await _server_span_ms(client, ids)
            slow = server.slowlog()
        finally:
            await client.close()
    finally:
        for p in procs:
            p.stop()
    elapsed = (last - first) / 1000 or wall
    steps = n * STEPS

    def delta(name: str, pairs: Sequence[tuple[dict[str, int], dict[str, int]]]) -> int:
        return sum(b.get(name, 0) - a.get(name, 0) for a, b in pairs)

    w_pairs = list(zip(before, after, strict=True))
    worker_rt, worker_cmd = delta("round_trips", w_pairs), delta("commands", w_pairs)
    client_rt = delta("round_trips", [(client0, client1)])
    client_cmd = delta("commands", [(client0, client1)])
    calls = {name: int(s["calls"]) for name, s in stats.items()}
    sent = worker_cmd + client_cmd
    fcall = stats.get("fcall", {})
    return {
        "workers": workers,
        "loop": (worker_env or {}).get(LOOP_ENV) or loop_name(),
        "workflows": n,
        "elapsed_s": elapsed,
        "wall_s": wall,
        "enqueue_s": enqueued,
        "wf_per_s": n / elapsed,
        "steps_per_s": steps / elapsed,
        "cpu_s": {"server": srv_cpu, "workers": worker_cpu, "driver": driver_cpu},
        "per_step": {
            "worker_round_trips": worker_rt / steps,
            "worker_commands": worker_cmd / steps,
            "client_round_trips": client_rt / steps,
            "client_commands": client_cmd / steps,
            "fcalls": calls.get("fcall", 0) / steps,
            "commands_inside_lua": max(0, sum(calls.values()) - sent) / steps,
            "fcall_usec": fcall.get("usec", 0.0) / steps,
            "server_usec": sum(s.get("usec", 0.0) for s in stats.values()) / steps,
        },
        "fcall_usec_per_call": fcall.get("usec_per_call", 0.0),
        "calls": calls,
        "commandstats": stats,
        "slowlog_over_1ms": len(slow),
        "slowlog_top": [
            {"us": e.get("duration"), "command": str(e.get("command", b""))[:120]}
            for e in sorted(slow, key=lambda e: -int(e.get("duration", 0)))[:5]
        ],
        "worker_stats": [p.stats for p in procs],
    }


async def latency(server: PrivateServer, n: int = 200, warmup: int = 20) -> dict[str, Any]:
    """`n` sequential start -> result of the 3-step workflow, one worker process; also
    the round trips and commands per step when nothing can be batched."""
    prefix = new_prefix("lat")
    worker = WorkerProcess(server.url, prefix)
    try:
        worker.wait_ready()
        client = await _connect(server.url, prefix)
        try:
            samples: list[float] = []
            for i in range(warmup + n):
                if i == warmup:
                    w0, c0 = worker.counters(), counters.snapshot()
                t0 = time.perf_counter()
                handle = await client.start_workflow(
                    Steps.run, STEPS, id=f"lat-{i}", task_queue=TASK_QUEUE
                )
                await handle.result()
                if i >= warmup:
                    samples.append(time.perf_counter() - t0)
            w1, c1 = worker.counters(), counters.snapshot()
        finally:
            await client.close()
    finally:
        worker.stop()
    steps = n * STEPS
    return {
        **summary_ms(samples),
        "per_step": {
            "worker_round_trips": (w1["round_trips"] - w0["round_trips"]) / steps,
            "worker_commands": (w1["commands"] - w0["commands"]) / steps,
            "client_round_trips": (c1["round_trips"] - c0["round_trips"]) / steps,
            "client_commands": (c1["commands"] - c0["commands"]) / steps,
        },
    }


async def _history_len(client: Client, wf_id: str) -> int:
    raw = await client.redis.hget(client.keys.workflow(wf_id), "next_event_id")
    return int(raw or 1) - 1


async def _wait_idle(client: Client, wf_id: str, events: int, timeout: float = 10) -> None:
    """Until the workflow's history has at least `events` events and no task is due."""
    deadline = time.monotonic() + timeout
    key = client.keys.workflow(wf_id)
    while time.monotonic() < deadline:
        wft, nxt = await client.redis.hmget(key, "wft", "next_event_id")
        if wft == b"none" and int(nxt or 0) - 1 >= events:
            return
        await asyncio.sleep(0.001)
    raise TimeoutError(f"{wf_id} did not settle")


async def signals(server: PrivateServer, n: int = 200, gap: float = 0.01) -> dict[str, Any]:
    """Signal -> the workflow's code observed it (Probe), and signal -> result of a
    workflow that completes on the signal (Gate); one worker process, sequential."""
    prefix = new_prefix("sig")
    worker = WorkerProcess(server.url, prefix)
    try:
        worker.wait_ready()
        client = await _connect(server.url, prefix)
        try:
            handle = await client.start_workflow(Probe.run, n, id="probe", task_queue=TASK_QUEUE)
            await _wait_idle(client, "probe", 2)
            sent: list[int] = []
            send_call: list[float] = []
            for _ in range(n):
                await asyncio.sleep(gap)
                t = time.monotonic_ns()
                await handle.signal(Probe.ping)
                send_call.append((time.monotonic_ns() - t) / 1e9)
                sent.append(t)
            seen: list[int] = await handle.result()
            observed = [(s - t) / 1e9 for s, t in zip(seen, sent, strict=True)]

            gate: list[float] = []
            for i in range(n):
                wf_id = f"gate-{i}"
                h = await client.start_workflow(Gate.run, id=wf_id, task_queue=TASK_QUEUE)
                await _wait_idle(client, wf_id, 2)
                await asyncio.sleep(gap)
                t0 = time.perf_counter()
                await h.signal(Gate.open)
                await h.result()
                gate.append(time.perf_counter() - t0)
        finally:
            await client.close()
    finally:
        worker.stop()
    return {
        "observed": summary_ms(observed),
        "signal_call": summary_ms(send_call),
        "signal_to_result": summary_ms(gate),
    }


def _steps_for(events: int) -> int:
    """A Stamps workflow of n steps has 3n + 3 events."""
    return max(2, round((events - 3) / 3))


async def history(
    server: PrivateServer, sizes: Sequence[int] = (10, 100, 1000, 5000), min_diffs: int = 100
) -> dict[str, Any]:
    """Per-step time at the tail of histories of growing length (sticky cache on), and
    the cold replay of the longest one."""
    prefix = new_prefix("hist")
    worker = WorkerProcess(server.url, prefix)
    out: dict[str, Any] = {"sizes": {}}
    try:
        worker.wait_ready()
        client = await _connect(server.url, prefix)
        try:
            last_id = ""
            for size in sizes:
                steps = _steps_for(size)
                keep = min(steps, 51)
                diffs: list[float] = []
                events = 0
                runs = 0
                while len(diffs) < min_diffs or runs < 1:
                    wf_id = f"hist-{size}-{runs}"
                    h = await client.start_workflow(
                        Stamps.run, steps, keep, id=wf_id, task_queue=TASK_QUEUE
                    )
                    stamps: list[int] = await h.result(timeout=600)
                    diffs += [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
                    events = await _history_len(client, wf_id)
                    runs += 1
                    last_id = wf_id
                    if steps > 300:
                        break
                s = summary_ms(diffs)
                out["sizes"][str(size)] = {
                    "events": events,
                    "steps": steps,
                    "workflows": runs,
                    "step_p50_ms": s["p50_ms"],
                    "step_mean_ms": s["mean_ms"],
                    "step_p99_ms": s["p99_ms"],
                    "n": s["n"],
                }
            out["cold_replay"] = await _cold_replay(client, last_id)
        finally:
            await client.close()
    finally:
        worker.stop()
    return out


async def _cold_replay(client: Client, wf_id: str, reps: int = 5) -> dict[str, Any]:
    """Read + decode the whole history, replay it on a fresh machine; and the same
    end to end as a query that a worker answers by replay (the run is closed)."""
    store: Store = client.store
    read_s: list[float] = []
    replay_s: list[float] = []
    query_s: list[float] = []
    events = 0
    from scripts.bench.workload import Stamps as _Stamps
    from sdk._definitions import workflow_definition

    definition = workflow_definition(_Stamps)
    for _ in range(reps):
        t0 = time.perf_counter()
        entries = await store.read_history(wf_id)
        t1 = time.perf_counter()
        machine = new_machine(definition, wf_id, "run", TASK_QUEUE, client.codec)
        machine.replay([e for _, e in entries])
        t2 = time.perf_counter()
        read_s.append(t1 - t0)
        replay_s.append(t2 - t1)
        events = len(entries)
        h = client.get_workflow_handle(wf_id)
        t3 = time.perf_counter()
        await h.query(Stamps.steps_done, timeout=30)
        query_s.append(time.perf_counter() - t3)
    return {
        "events": events,
        "read_ms": percentile(read_s, 50) * 1000,
        "replay_ms": percentile(replay_s, 50) * 1000,
        "query_ms": percentile(query_s, 50) * 1000,
    }


async def memory(server: PrivateServer, n: int = 10000, warm: int = 200) -> dict[str, Any]:
    """Worker RSS with `n` open workflows in its sticky cache (each waiting for a
    signal), per cached instance from the growth past `warm`; and Redis memory."""
    prefix = new_prefix("mem")
    worker = WorkerProcess(server.url, prefix, extra=["--max-cached", str(n + 1000)])
    try:
        worker.wait_ready()
        client = await _connect(server.url, prefix)
        try:
            sem = asyncio.Semaphore(64)

            async def start(i: int) -> None:
                async with sem:
                    await client.start_workflow(Gate.run, id=f"mem-{i}", task_queue=TASK_QUEUE)

            async def settle() -> None:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    pipe = client.redis.pipeline(transaction=False)
                    for shard in range(client.keys.shards):
                        pipe.xlen(client.keys.workflow_tasks(shard, TASK_QUEUE))
                    if sum(await pipe.execute()) == 0:
                        return
                    await asyncio.sleep(0.05)
                raise TimeoutError("open workflows did not settle")

            await asyncio.gather(*(start(i) for i in range(warm)))
            await settle()
            await asyncio.sleep(0.5)
            rss0 = rss_kib(worker.pid)
            mem0 = int(server.info("memory")["used_memory"])
            await asyncio.gather(*(start(i) for i in range(warm, n)))
            await settle()
            await asyncio.sleep(0.5)
            rss1 = rss_kib(worker.pid)
            mem1 = int(server.info("memory")["used_memory"])
        finally:
            await client.close()
    finally:
        stats = worker.stop(timeout=60)
    grown = n - warm
    return {
        "open_workflows": n,
        "cached": stats.get("cached"),
        "worker_rss_mib": rss1 / 1024,
        "worker_rss_before_mib": rss0 / 1024,
        "kib_per_cached_workflow": (rss1 - rss0) / grown,
        "redis_bytes_per_open_workflow": (mem1 - mem0) / grown,
        "redis_used_mib": mem1 / 2**20,
    }
