"""The transport floor: what Redis and redis-py cost before any engine logic.

- XADD -> a blocked XREADGROUP in another process wakes up (the floor of a signal);
- one round trip from redis-py asyncio (what the engine's client pays per command) and
  from the synchronous client;
- Lua call rate: FCALL of a no-op function, and of one that does a step's worth of
  writes, one at a time and pipelined.

`python -m scripts.bench.transport reader URL STREAM N` is the reader process.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from typing import Any

import redis
import redis.asyncio

from scripts.bench.peers.common import summary_ms
from scripts.bench.servers import PrivateServer
from scripts.bench.util import CODE, run_async

LIBRARY = """#!lua name=rdbench
redis.register_function('rdbench_noop', function(keys, args) return 1 end)
redis.register_function('rdbench_step', function(keys, args)
  local id = redis.call('HINCRBY', keys[1], 'next', 1)
  redis.call('XADD', keys[2], 'MAXLEN', '~', 1000, '*', 'id', id, 'type', 'Step', 'v', args[1])
  redis.call('HSET', keys[1], 'state', args[1])
  return id
end)
"""


def reader(url: str, stream: str, n: int) -> None:
    r = redis.Redis.from_url(url)
    with contextlib.suppress(redis.ResponseError):
        r.xgroup_create(stream, "g", id="$", mkstream=True)
    print("ready", flush=True)
    lat: list[float] = []
    while len(lat) < n:
        reply: Any = r.xreadgroup("g", "c", {stream: ">"}, count=1, block=0, noack=True)
        now = time.monotonic_ns()
        for _, entries in reply:
            for _, fields in entries:
                lat.append((now - int(fields[b"t"])) / 1e9)
    print(json.dumps(lat), flush=True)


def xadd_wakeup(server: PrivateServer, n: int = 1000, gap: float = 0.002) -> dict[str, float]:
    stream = "bench:wakeup"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.bench.transport", "reader", server.url, stream, str(n)],
        cwd=CODE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.communicate()  # reaped, its pipe closed
        raise RuntimeError("transport reader did not start")
    r = server.sync_client()
    time.sleep(0.05)
    for _ in range(n):
        time.sleep(gap)
        r.xadd(stream, {"t": time.monotonic_ns()})
    out, _ = proc.communicate(timeout=60)
    r.close()
    return summary_ms(json.loads(out))


def _rate(fn: Any, seconds: float = 1.0) -> float:
    """Calls of fn per second (fn returns how many calls it made)."""
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += fn()
    return done / (time.perf_counter() - t0)


def lua_rates(server: PrivateServer, seconds: float = 1.0) -> dict[str, float]:
    r = server.sync_client()
    r.function_load(LIBRARY, replace=True)
    keys = ["bench:{1}:h", "bench:{1}:s"]

    def seq_ping() -> int:
        r.ping()
        return 1

    def seq_noop() -> int:
        r.fcall("rdbench_noop", 0)
        return 1

    def seq_step() -> int:
        r.fcall("rdbench_step", 2, *keys, "x")
        return 1

    def piped(name: str, numkeys: int, *args: str) -> Any:
        def run() -> int:
            pipe = r.pipeline(transaction=False)
            for _ in range(100):
                pipe.fcall(name, numkeys, *args)
            pipe.execute()
            return 100

        return run

    out = {
        "ping_sync_per_s": _rate(seq_ping, seconds),
        "fcall_noop_per_s": _rate(seq_noop, seconds),
        "fcall_step_per_s": _rate(seq_step, seconds),
        "fcall_noop_pipelined_per_s": _rate(piped("rdbench_noop", 0), seconds),
        "fcall_step_pipelined_per_s": _rate(piped("rdbench_step", 2, *keys, "x"), seconds),
    }
    r.function_delete("rdbench")
    r.close()
    return out


async def _async_ping_rate(url: str, seconds: float) -> float:
    r = redis.asyncio.Redis.from_url(url)
    await r.ping()
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await r.ping()
        done += 1
    rate = done / (time.perf_counter() - t0)
    await r.aclose()
    return rate


def floor(server: PrivateServer, n: int = 1000) -> dict[str, Any]:
    return {
        "xadd_wakeup": xadd_wakeup(server, n),
        "ping_async_per_s": run_async(_async_ping_rate(server.url, 1.0)),
        **lua_rates(server),
    }


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "reader":
        reader(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: python -m scripts.bench.transport reader URL STREAM N")
