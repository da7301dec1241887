"""Cluster clients on the engine's hot path, measured in one run (issue 12: before
writing slot routing by hand, measure the kept cluster clients against engine/resp.py).

    .venv/bin/python -m scripts.bench.cluster_clients                 # print the table
    .venv/bin/python -m scripts.bench.cluster_clients --write-doc     # and into docs/benchmarks.md

It starts a local 3-master Redis Cluster (scripts/cluster.py) on free ports, loads a
one-line function library on each master, and runs each client in a process of its
own on two workloads, each on keys of one master's slots ("1 node") and, for the
cluster clients, of all three ("3 nodes"):

- FCALL: `--calls` calls of a function that HINCRBYs its one key (a transition's
  shape: one key's slot, one round trip), in pipelines of `--batch`, one pipeline at a
  time, keys in turn over 12 shard tags ({0}..{11}, as the engine's history shards);
- XREADGROUP: `--reads` non-blocking reads of 10 entries each (a worker's task read)
  from prefilled streams of those shards, in turn.

Figures: calls (entries) per second of wall time, and the client process's CPU per call
(per read), from `time.process_time`. Clients: engine/resp.py (one node only: it does
not route by slot), engine/resp_cluster.py (the same behind slot routing: the engine's
cluster mode), redis-py's `Redis` (one node), redis-py's `RedisCluster` (asyncio),
and from `.bench-venv/cluster` (requirements/bench/cluster.lock, set up by
scripts/bench/setup_venvs.sh) coredis's `RedisCluster` and valkey-glide's
`GlideClusterClient`; a client that is not installed is reported so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_VENV = ROOT / ".bench-venv" / "cluster" / "bin" / "python"
SHARDS = 12
LIBRARY = ("#!lua name=benchclu\n"
           "redis.register_function('bench_touch', function(keys, args) "
           "return redis.call('HINCRBY', keys[1], 'n', 1) end)")
#: client name -> (interpreter, runs on a cluster client)
CLIENTS: dict[str, tuple[Path, bool]] = {
    "engine/resp.py": (Path(sys.executable), False),
    "engine/resp_cluster.py": (Path(sys.executable), True),
    "redis-py Redis": (Path(sys.executable), False),
    "redis-py RedisCluster": (Path(sys.executable), True),
    "coredis RedisCluster": (BENCH_VENV, True),
    "valkey-glide GlideClusterClient": (BENCH_VENV, True),
}
DOC_START = "<!-- cluster-clients:start -->"
DOC_END = "<!-- cluster-clients:end -->"


def hash_key(shard: int) -> str:
    return f"bench:{{{shard}}}:h"


def stream_key(shard: int) -> str:
    return f"bench:{{{shard}}}:tq"


# --- the measured side: one client in a process of its own -----------------------------


async def _measure(fcall_batch: Callable[[list[str]], Awaitable[Any]],
                   xreadgroup: Callable[[str], Awaitable[int]], shards: list[int],
                   calls: int, batch: int, reads: int) -> dict[str, float]:
    keys = [hash_key(s) for s in shards]
    await fcall_batch(keys[:1])  # connect, discover the topology
    wall, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < calls:
        await fcall_batch([keys[(done + i) % len(keys)] for i in range(batch)])
        done += batch
    fcall_wall, fcall_cpu = time.perf_counter() - wall, time.process_time() - cpu
    streams = [stream_key(s) for s in shards]
    wall, cpu = time.perf_counter(), time.process_time()
    entries = 0
    for i in range(reads):
        entries += await xreadgroup(streams[i % len(streams)])
    read_wall, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"fcall_per_s": done / fcall_wall, "fcall_cpu_us": fcall_cpu / done * 1e6,
            "entries_per_s": entries / read_wall, "read_cpu_us": read_cpu / reads * 1e6,
            "entries": entries}


async def run_client(name: str, port: int, group: str, shards: list[int], calls: int,
                     batch: int, reads: int) -> dict[str, float]:
    """One client's figures (imports only what that client needs: the bench venv has
    none of the project's dependencies)."""
    if name.startswith("engine/resp"):
        from engine.resp import RespPool
        from engine.resp_cluster import ClusterRespPool
        pool = (ClusterRespPool([("127.0.0.1", port)]) if "cluster" in name
                else RespPool("127.0.0.1", port))

        async def resp_fcalls(keys: list[str]) -> Any:
            return await pool.execute_many([("FCALL", "bench_touch", 1, k) for k in keys])

        async def resp_read(key: str) -> int:
            reply = await pool.execute("XREADGROUP", "GROUP", group, "c", "COUNT", 10,
                                       "STREAMS", key, ">")
            return len(reply[0][1]) if reply else 0

        try:
            return await _measure(resp_fcalls, resp_read, shards, calls, batch, reads)
        finally:
            await pool.close()
    if name.startswith("redis-py"):
        from redis.asyncio import Redis
        from redis.asyncio.cluster import RedisCluster
        client: Any = (RedisCluster(host="127.0.0.1", port=port) if "Cluster" in name
                       else Redis(host="127.0.0.1", port=port))

        async def py_fcalls(keys: list[str]) -> Any:
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.fcall("bench_touch", 1, k)
            return await pipe.execute()

        async def py_read(key: str) -> int:
            reply = await client.xreadgroup(group, "c", {key: ">"}, count=10)
            return len(reply[0][1]) if reply else 0

        try:
            return await _measure(py_fcalls, py_read, shards, calls, batch, reads)
        finally:
            await client.aclose()
    if name.startswith("coredis"):
        import coredis
        core: Any = coredis.RedisCluster(host="127.0.0.1", port=port)

        async def core_fcalls(keys: list[str]) -> Any:
            async with core.pipeline(transaction=False) as pipe:
                pending = [pipe.fcall("bench_touch", keys=[k]) for k in keys]
            return [await p for p in pending]

        async def core_read(key: str) -> int:
            reply = await core.xreadgroup(group, "c", streams={key: ">"}, count=10)
            return sum(len(v) for v in reply.values()) if reply else 0

        async with core:
            return await _measure(core_fcalls, core_read, shards, calls, batch, reads)
    if name.startswith("valkey-glide"):
        from glide import (
            ClusterBatch,
            GlideClusterClient,
            GlideClusterClientConfiguration,
            NodeAddress,
            StreamReadGroupOptions,
        )
        glide: Any = await GlideClusterClient.create(
            GlideClusterClientConfiguration([NodeAddress("127.0.0.1", port)]))

        async def glide_fcalls(keys: list[str]) -> Any:
            batch_ = ClusterBatch(is_atomic=False)
            for k in keys:
                batch_.fcall("bench_touch", keys=[k])
            return await glide.exec(batch_, raise_on_error=True)

        async def glide_read(key: str) -> int:
            reply = await glide.xreadgroup({key: ">"}, group, "c",
                                           StreamReadGroupOptions(count=10))
            return sum(len(v) for v in reply.values()) if reply else 0

        try:
            return await _measure(glide_fcalls, glide_read, shards, calls, batch, reads)
        finally:
            await glide.close()
    raise ValueError(f"unknown client {name!r}")


# --- the driver: the cluster, the data, one process per client and workload -----------


def _prepare(ports: list[int], group: str, entries: int) -> None:
    from redis.cluster import RedisCluster
    cluster = RedisCluster(host="127.0.0.1", port=ports[0])
    try:
        for shard in range(SHARDS):
            key = stream_key(shard)
            pipe = cluster.pipeline()  # type: ignore[no-untyped-call]
            for n in range(entries):
                pipe.xadd(key, {"n": n})
            pipe.execute()
            cluster.xgroup_create(key, group, id="0")
    finally:
        cluster.close()


def _shards_of(port: int, ports: list[int]) -> list[int]:
    """The shard tags whose slots live on the master at `port`."""
    from redis.cluster import RedisCluster
    cluster = RedisCluster(host="127.0.0.1", port=ports[0])
    try:
        return [s for s in range(SHARDS)
                if cluster.get_node_from_key(hash_key(s)).port == port]  # type: ignore[no-untyped-call]
    finally:
        cluster.close()


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from redis import Redis

    from scripts.cluster import LocalCluster, free_cluster_ports
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(free_cluster_ports(3), workdir=Path(tmp)) as cluster:
        masters = cluster.masters()
        for port in masters:
            with Redis(host="127.0.0.1", port=port) as node:
                node.function_load(LIBRARY, replace=True)
        one = _shards_of(masters[0], masters)
        runs = 0
        for name, (python, is_cluster) in CLIENTS.items():
            if args.clients and name not in args.clients.split(","):
                continue
            for spread, shards in (("1 node", one), ("3 nodes", list(range(SHARDS)))):
                if spread == "3 nodes" and not is_cluster:
                    continue
                if not python.exists():
                    rows.append({"client": name, "spread": spread,
                                 "error": "not installed (scripts/bench/setup_venvs.sh)"})
                    continue
                runs += 1
                group = f"g{runs}"
                # Enough entries that no read comes back short.
                _prepare(masters, group, args.reads * 10 // len(shards) + 10)
                command = [str(python), "-m", "scripts.bench.cluster_clients", "--run", name,
                           "--port", str(masters[0]), "--group", group,
                           "--shards", ",".join(map(str, shards)), "--calls", str(args.calls),
                           "--batch", str(args.batch), "--reads", str(args.reads)]
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                      check=False)
                row: dict[str, Any] = {"client": name, "spread": spread}
                if done.returncode == 0:
                    row.update(json.loads(done.stdout.strip().splitlines()[-1]))
                else:
                    row["error"] = (done.stderr.strip().splitlines() or ["failed"])[-1][:200]
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| client | keys on | FCALL calls/s | client CPU per FCALL | XREADGROUP entries/s "
        "| client CPU per read (10 entries) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['client']} | {r['spread']} | {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['client']} | {r['spread']} | {r['fcall_per_s']:,.0f} | "
            f"{r['fcall_cpu_us']:.1f} us | {r['entries_per_s']:,.0f} | "
            f"{r['read_cpu_us']:.0f} us |")
    lines.append("")
    lines.append(f"{args.calls} FCALLs in pipelines of {args.batch}, {args.reads} reads; "
                 "`.venv/bin/python -m scripts.bench.cluster_clients`.")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    content = doc.read_text()
    block = f"{DOC_START}\n{text}\n{DOC_END}"
    if DOC_START in content:
        head, rest = content.split(DOC_START, 1)
        content = head + block + rest.split(DOC_END, 1)[1]
    else:
        content = content.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(content)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--reads", type=int, default=2_000)
    p.add_argument("--write-doc", action="store_true")
    p.add_argument("--clients", default="",
                   help="only these clients, comma-separated (e.g. engine/resp.py,"
                   "engine/resp_cluster.py)")
    p.add_argument("--run", help=argparse.SUPPRESS)  # the measured side
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--shards", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run:
        shards = [int(s) for s in args.shards.split(",")]
        figures = asyncio.run(run_client(args.run, args.port, args.group, shards,
                                         args.calls, args.batch, args.reads))
        print(json.dumps(figures))
        return
    text = table(measure_all(args), args)
    print(text)
    if args.write_doc:
        write_doc(text)


if __name__ == "__main__":
    main()
