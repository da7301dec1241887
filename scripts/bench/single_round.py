"""One round of issue 11's single-process throughput check, as scripts/bench/fleet.py's
`throughput` runs it (2,000 `Steps` workflows of 3 activities on one worker process
against --url, then the engine floor on --floor-port), plus the CPU each side spent per
workflow. Prints one JSON line; for A/B runs, alternate it between two worktrees:

    for i in 1 2 3; do for wt in ../wt-base .; do (cd $wt && PYTHONPATH=. \\
      .venv/bin/python -m scripts.bench.single_round --url redis://127.0.0.1:6520 \\
      --floor-port 6521); done; done

The --url server is flushed first (it must be private); its CPU comes from INFO cpu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import redis

from scripts.bench import fleet
from scripts.bench import redurable_bench as rb


def server_cpu(r: redis.Redis) -> float:
    info: dict[str, Any] = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="a private server (flushed)")
    p.add_argument("--floor-port", type=int, required=True, help="server port for the floor")
    p.add_argument("-n", type=int, default=2000, help="workflows")
    args = p.parse_args()
    r = redis.Redis.from_url(args.url)
    r.flushall()
    cpu0 = server_cpu(r)
    result = asyncio.run(rb.throughput(fleet.AttachedServer(args.url), 1, args.n))
    redis_cpu = server_cpu(r) - cpu0
    floor = fleet.floor_round(fleet.FLOOR, args.floor_port, args.n)
    cpu = result["cpu_s"]
    print(json.dumps({
        "wf_s": result["wf_per_s"], "floor": floor, "fraction": result["wf_per_s"] / floor,
        "us_per_wf": {"worker": cpu["workers"] / args.n * 1e6,
                      "redis": redis_cpu / args.n * 1e6,
                      "driver": cpu["driver"] / args.n * 1e6},
        "fcall_usec_per_call": result["fcall_usec_per_call"],
        "commands_inside_lua_per_step": result["per_step"]["commands_inside_lua"],
    }))


if __name__ == "__main__":
    main()
