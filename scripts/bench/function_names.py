"""What versioned function names cost on the hot path: engine/calls.py's FunctionCaller,
which maps each call's plain name to this library version's (`rd_x` ->
`rd_x_<version>`, one dict lookup, and 17 more bytes per FCALL for the server to read
and look up), against the same caller with the pre-versioning code path (the plain name
sent as it is). Same server, same Lua body under both names, rounds alternating the
two callers, best round of each (the machine is shared: noise only ever adds time).

    .venv/bin/python -m scripts.bench.function_names --url redis://127.0.0.1:6404

Workloads: `single` (one FCALL per round trip: a transition's usual call) and `batch of
50` (call_many). Figures: calls per second of wall time, the client's CPU per call
(`time.process_time`), and the ratio versioned / plain.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from engine.calls import Call, FunctionCaller
from engine.library import library_version, versioned
from engine.resp import RespPool

PLAIN = "rd_bench_step"
VERSIONED = versioned(PLAIN, library_version())
BODY = "function(keys, args) return redis.call('HINCRBY', keys[1], 'n', 1) end"
LIBRARY = ("#!lua name=benchnames\n"
           f"redis.register_function('{PLAIN}', {BODY})\n"
           f"redis.register_function('{VERSIONED}', {BODY})\n")


class PlainNamesCaller(FunctionCaller):
    """The fast path as it was before versioned names: the call's name sent as is."""

    async def _call(self, call: Call) -> Any:
        assert self.fast is not None
        return await self.fast.execute("FCALL", call.function, len(call.keys), *call.keys,
                                       *call.args)

    async def _call_many(self, calls: Sequence[Call]) -> list[Any]:
        assert self.fast is not None
        return await self.fast.execute_many(
            [("FCALL", c.function, len(c.keys), *c.keys, *c.args) for c in calls])


async def _run(caller: FunctionCaller, calls: list[Call], batch: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    if batch == 1:
        for call in calls:
            await caller.call(call)
    else:
        for start in range(0, len(calls), batch):
            await caller.call_many(calls[start:start + batch])
    return len(calls) / (time.perf_counter() - wall), (time.process_time() - cpu) / len(calls) * 1e6


async def measure(url: str, calls: int, rounds: int) -> list[str]:
    redis = Redis.from_url(url)
    await redis.function_load(LIBRARY, replace=True)
    fast = RespPool.from_url(url)
    versioned_caller = FunctionCaller(redis, fast)
    versioned_caller._names = {PLAIN: VERSIONED}  # this version's mapping, for the bench name
    plain_caller = PlainNamesCaller(redis, fast)
    keys = [f"bench-names:{{{s}}}:h" for s in range(12)]
    work = [Call(PLAIN, [keys[i % len(keys)]], []) for i in range(calls)]
    lines = ["| workload | caller | calls/s | client CPU per call |", "|---|---|---|---|"]
    try:
        for name, batch in (("single", 1), ("batch of 50", 50)):
            todo = work[: calls // 10] if batch == 1 else work
            best: dict[str, tuple[float, float]] = {}
            for _ in range(rounds):
                for label, caller in (("plain names (before)", plain_caller),
                                      ("versioned names", versioned_caller)):
                    rate, cpu = await _run(caller, todo, batch)
                    old = best.get(label)
                    best[label] = (max(rate, old[0]) if old else rate,
                                   min(cpu, old[1]) if old else cpu)
            for label, (rate, cpu) in best.items():
                lines.append(f"| {name} | {label} | {rate:,.0f} | {cpu:.1f} us |")
            (p_rate, p_cpu), (v_rate, v_cpu) = best.values()
            lines.append(f"| {name} | ratio versioned / plain | {v_rate / p_rate:.3f} | "
                         f"{v_cpu / p_cpu:.3f} |")
    finally:
        await redis.function_delete("benchnames")
        for key in keys:
            await redis.delete(key)
        await fast.close()
        await redis.aclose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="a private server")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for line in asyncio.run(measure(args.url, args.calls, args.rounds)):
        print(line)


if __name__ == "__main__":
    main()
