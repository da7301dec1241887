"""What one wake-up of a blocked worker costs, by how long it slept:
`python -m scripts.bench.wake_cost --url redis://127.0.0.1:PORT [--gaps 0,1,5]`.

A fleet of K workers on a fixed load splits the same steps into K times more, smaller
rounds, each begun by a wake-up from a blocked read (docs/benchmarks.md, "Where a
worker's CPU per step goes at K=20"). This measures that cost alone: a process blocked
in XREADGROUP (the worker's read, on the lean client) is woken by an entry that another
process adds every GAP ms, and reads it; its CPU per round (user and system, from
getrusage) is reported per GAP. Two parts: `read` (the read alone) and `read+work`
(then a fixed piece of Python after each read: decoding a packed event ten times, about
what a small batch does), to show how the same Python costs more after a longer sleep.
Against a private server only.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlparse

from engine.events import decode_packed_event
from engine.resp import RespPool
from scripts.bench.util import run_async

STREAM = "wake-cost"
#: A packed signal event as a workflow task carries it (netstrings: engine/events.py).
PACKED = b"".join(b"%d:%s" % (len(part), part) for part in (
    b"7", b"WorkflowExecutionSignaled", b"1764552000000", b"signal_name", b"ping",
    b"input", b"\x90"))

FEEDER = """
import sys, time, redis
r = redis.Redis.from_url(sys.argv[1]); gap = float(sys.argv[2]) / 1000
while True:
    r.xadd(sys.argv[3], {"f": "v"})
    time.sleep(gap)
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.wake_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="a private server")
    p.add_argument("--gaps", default="0,1,5", help="ms between entries, comma list")
    p.add_argument("--rounds", type=int, default=400, help="reads measured per gap")
    return p.parse_args(argv)


def work() -> None:
    for _ in range(10):
        decode_packed_event(PACKED)


def start_feeder(url: str, gap_ms: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", FEEDER, url, str(gap_ms), STREAM])


async def measure(url: str, gap_ms: float, rounds: int, with_work: bool) -> str:
    host = urlparse(url)
    pool = RespPool(host.hostname or "127.0.0.1", host.port or 6379)
    await pool.execute("DEL", STREAM)
    await pool.execute("XGROUP", "CREATE", STREAM, "g", "$", "MKSTREAM")
    feeder = start_feeder(url, gap_ms)
    try:
        read = ("XREADGROUP", "GROUP", "g", "c", "COUNT", 100, "BLOCK", 500,
                "STREAMS", STREAM, ">")
        for _ in range(20):  # warm up
            await pool.execute_blocking(*read)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        for _ in range(rounds):
            await pool.execute_blocking(*read)
            if with_work:
                work()
        after = resource.getrusage(resource.RUSAGE_SELF)
        seconds = time.monotonic() - started
    finally:
        feeder.kill()
        feeder.wait()
        await pool.close()
    user = (after.ru_utime - before.ru_utime) / rounds * 1e6
    system = (after.ru_stime - before.ru_stime) / rounds * 1e6
    switches = (after.ru_nvcsw - before.ru_nvcsw) / rounds
    label = "read+work" if with_work else "read"
    return (f"| {label} | {gap_ms:g} | {user + system:.0f} | {user:.0f} | {system:.0f} "
            f"| {switches:.2f} | {rounds / seconds:,.0f} |")


async def main_async(args: argparse.Namespace) -> None:
    print("| per round | gap ms | CPU us | user us | system us | sleeps | rounds/s |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    gaps = [float(g) for g in args.gaps.split(",") if g.strip()]
    for with_work in (False, True):
        for gap in gaps:
            print(await measure(args.url, gap, args.rounds, with_work), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    run_async(main_async(parse_args(argv)))


if __name__ == "__main__":
    main()
