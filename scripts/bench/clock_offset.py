"""What the time-skipping clock offset costs a transition (docs/design-notes.md, "Time
skipping"): server time per `rd_fire_timers` call (one `now_ms()` each, nothing due)
with the production library and with the time-skipping variant, in turns.

    python -m scripts.bench.clock_offset --url redis://127.0.0.1:6379 [--calls N] [--rounds R]

Use a private server: it loads each library in turn (FUNCTION LOAD REPLACE) and deletes
the library at the end. Figures: server `usec_per_call` of FCALL (INFO commandstats),
best and median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from redis.asyncio import Redis

from engine.functions import function_name, library_name, library_source
from engine.keys import Keys
from engine.time_skipping import time_skipping_library_source


async def one_round(redis: Redis, keys: Keys, source: str, calls: int) -> float:
    await redis.function_load(source, replace=True)
    await redis.config_resetstat()
    pipe = redis.pipeline(transaction=False)
    for _ in range(calls):
        pipe.fcall(function_name("rd_fire_timers"), 1, keys.timers(0), keys.shard_prefix(0), 200)
    await pipe.execute()
    stats = await redis.info("commandstats")
    return float(stats["cmdstat_fcall"]["usec_per_call"])


async def main(url: str, calls: int, rounds: int) -> None:
    redis = Redis.from_url(url)
    keys = Keys("bench-clock-offset")
    sources = {
        "production": library_source(),
        "time-skipping variant": time_skipping_library_source(keys),
    }
    figures: dict[str, list[float]] = {name: [] for name in sources}
    try:
        for _ in range(rounds):
            for name, source in sources.items():
                figures[name].append(await one_round(redis, keys, source, calls))
    finally:
        await redis.function_delete(library_name())
        await redis.aclose()
    for name, values in figures.items():
        print(
            f"{name:22} server us/call: best {min(values):.2f}, "
            f"median {statistics.median(values):.2f} ({rounds} rounds of {calls} calls)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.calls, args.rounds))
