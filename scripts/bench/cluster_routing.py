"""What cluster mode's slot routing costs on the hot path: engine/resp_cluster.py against
plain engine/resp.py, on keys of ONE master (so both talk to the same node and the
difference is the routing), in rounds that alternate the two clients (min of the rounds:
the machine is shared, noise only ever adds time).

    .venv/bin/python -m scripts.bench.cluster_routing                     # own cluster
    .venv/bin/python -m scripts.bench.cluster_routing --url redis://127.0.0.1:7200

Workloads: `single`: one FCALL at a time (a transition's round trip, the worker's usual
call); `batch`: pipelines of 50 FCALLs. Figures: calls per second of wall time and the
client's CPU per call (`time.process_time`), and the ratio cluster / plain. The
function HINCRBYs its one key, keys over shard tags {0}..{11} of that master.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from engine.resp import RespPool
from engine.resp_cluster import ClusterRespPool, key_slot

LIBRARY = ("#!lua name=benchroute\n"
           "redis.register_function('bench_route', function(keys, args) "
           "return redis.call('HINCRBY', keys[1], 'n', 1) end)")


async def _run(pool: RespPool, keys: list[str], calls: int, batch: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < calls:
        if batch == 1:
            await pool.execute("FCALL", "bench_route", 1, keys[done % len(keys)])
        else:
            await pool.execute_many([("FCALL", "bench_route", 1, keys[(done + i) % len(keys)])
                                     for i in range(batch)])
        done += batch
    return calls / (time.perf_counter() - wall), (time.process_time() - cpu) / calls * 1e6


async def measure(url: str, calls: int, rounds: int) -> list[str]:
    cluster = ClusterRespPool.from_url(url)
    await cluster.refresh()
    for address in cluster.primaries:
        await cluster.node(address).execute("FUNCTION", "LOAD", "REPLACE", LIBRARY)
    node = cluster.primaries[0]
    keys = [k for k in (f"bench:{{{s}}}:h" for s in range(64))
            if cluster.owner_of(k) == node][:12]
    assert len({key_slot(k) for k in keys}) == len(keys)
    plain = RespPool(*node)
    lines = ["| workload | client | calls/s | client CPU per call |", "|---|---|---|---|"]
    try:
        for name, batch in (("single", 1), ("batch of 50", 50)):
            n = calls // 10 if batch == 1 else calls
            best: dict[str, tuple[float, float]] = {}
            for _ in range(rounds):
                for label, pool in (("engine/resp.py", plain),
                                    ("engine/resp_cluster.py", cluster)):
                    await _run(pool, keys, min(n, 500), batch)  # warm
                    rate, cpu = await _run(pool, keys, n, batch)
                    old = best.get(label, (0.0, float("inf")))
                    best[label] = (max(old[0], rate), min(old[1], cpu))
            for label, (rate, cpu) in best.items():
                lines.append(f"| {name} | {label} | {rate:,.0f} | {cpu:.2f} us |")
            (p_rate, p_cpu), (c_rate, c_cpu) = best["engine/resp.py"], \
                best["engine/resp_cluster.py"]
            lines.append(f"| {name} | cluster / plain | {c_rate / p_rate:.2f} | "
                         f"{c_cpu / p_cpu:.2f} (+{c_cpu - p_cpu:.2f} us) |")
    finally:
        await plain.close()
        await cluster.close()
    lines.append("")
    lines.append(f"{calls} FCALLs per batched round ({calls // 10} single), best of "
                 f"{rounds} alternating rounds; `.venv/bin/python -m "
                 "scripts.bench.cluster_routing`.")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", help="a node of a running cluster (default: start one)")
    p.add_argument("--calls", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    if args.url:
        lines = asyncio.run(measure(args.url, args.calls, args.rounds))
    else:
        from scripts.cluster import LocalCluster, free_cluster_ports
        with tempfile.TemporaryDirectory() as tmp, \
                LocalCluster(free_cluster_ports(3), workdir=Path(tmp)) as local:
            lines = asyncio.run(measure(local.url, args.calls, args.rounds))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
