"""What the slot-moving guard costs the server (engine/lua/00_common.lua `slot_moving`,
the first line of every Function: on a cluster, one EXISTS of two keys that never exist,
which fails only while the shard's slot is moving; on a single server, one comparison).

The same library is loaded twice, side by side (each version has its own function
names, engine/library.py): as it is, and with the guard's line taken out. Rounds
alternate the two; each round resets the server's statistics (CONFIG RESETSTAT) and
reads `cmdstat_fcall` (time inside FCALL, summed over every primary), so the figure is
the server's own time per call, not the client's.

    .venv/bin/python -m scripts.bench.slot_guard --url redis://127.0.0.1:6402
    .venv/bin/python -m scripts.bench.slot_guard --url redis://127.0.0.1:7400  # a cluster

Calls: `rd_signal` to running workflows (a client's write, one per round trip) and the
timer scan `rd_fire_timers` of every shard with nothing due (a worker's most frequent
call when idle; the cheapest, so the guard's largest share).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid
from collections.abc import Awaitable, Callable

from engine.library import (
    build_library,
    lua_files,
    version_of_source,
    versioned,
    versioned_names,
)
from engine.resp import RespPool
from engine.resp_cluster import ClusterRespPool
from engine.store import Store
from sdk import Client

GUARD = "local moving = slot_moving(keys); if moving then return moving end"


def unguarded_lua() -> str:
    lines = lua_files().splitlines()
    kept = [line for line in lines if line.strip() != GUARD]
    assert len(kept) < len(lines), "the guard line was not found"
    return "\n".join(kept) + "\n"


def _nodes(fast: RespPool) -> list[RespPool]:
    if isinstance(fast, ClusterRespPool):
        return [fast.node(address) for address in fast.primaries]
    return [fast]


async def _fcall_usec(nodes: list[RespPool]) -> tuple[int, int]:
    """(calls, usec) of FCALL since the last reset, over every node."""
    calls = usec = 0
    for node in nodes:
        info = (await node.execute_many([("INFO", "commandstats")]))[0]
        for line in info.decode().splitlines():
            if line.startswith("cmdstat_fcall:"):
                fields = dict(part.split("=") for part in line.split(":", 1)[1].split(","))
                calls += int(fields["calls"])
                usec += int(fields["usec"])
    return calls, usec


async def measure(url: str, signals: int, scans: int, rounds: int) -> list[str]:
    client = await Client.connect(url, prefix=f"bench-guard-{uuid.uuid4().hex[:6]}")
    assert client.fast is not None
    fast = client.fast
    if isinstance(fast, ClusterRespPool):
        await fast.refresh()
    nodes = _nodes(fast)
    source = unguarded_lua()
    library = build_library(source)
    for node in nodes:
        reply = (await node.execute_many([("FUNCTION", "LOAD", library)]))[0]
        if isinstance(reply, Exception) and "already exists" not in str(reply):
            raise reply
    guarded = client.store
    unguarded = Store(client.redis, client.keys, fast)
    unguarded._names = {plain: versioned(plain, version_of_source(source))
                        for plain in versioned_names()}
    handles = [await client.start_workflow("Wait", id=f"g-{n}", task_queue="nowhere")
               for n in range(20)]
    run_ids = [h.run_id or "" for h in handles]

    async def signal_all(store: Store) -> None:
        for n in range(signals):
            w = n % len(handles)
            await store.signal(handles[w].id, run_ids[w], "ping", b"\x90")

    async def scan_all(store: Store) -> None:
        for _ in range(scans):
            await store.fire_timers()

    lines = ["| call | guard | server us per FCALL (median of rounds) |", "|---|---|---|"]
    try:
        work: list[tuple[str, Callable[[Store], Awaitable[None]]]] = [
            ("rd_signal", signal_all), ("rd_fire_timers (nothing due)", scan_all)]
        for name, run in work:
            per_call: dict[str, list[float]] = {"without": [], "with": []}
            for _ in range(rounds):
                for label, store in (("without", unguarded), ("with", guarded)):
                    for node in nodes:
                        await node.execute_many([("CONFIG", "RESETSTAT")])
                    await run(store)
                    calls, usec = await _fcall_usec(nodes)
                    per_call[label].append(usec / calls)
            without = statistics.median(per_call["without"])
            with_guard = statistics.median(per_call["with"])
            lines.append(f"| {name} | without | {without:.2f} |")
            lines.append(f"| {name} | with | {with_guard:.2f} |")
            lines.append(f"| {name} | ratio with / without | {with_guard / without:.3f} |")
    finally:
        for handle in handles:
            await handle.terminate("bench over")
        async for key in client.redis.scan_iter(match=f"{client.keys.prefix}:*"):
            await client.redis.delete(key)
        await client.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="a private server or cluster node")
    parser.add_argument("--signals", type=int, default=5_000)
    parser.add_argument("--scans", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for line in asyncio.run(measure(args.url, args.signals, args.scans, args.rounds)):
        print(line)


if __name__ == "__main__":
    main()
