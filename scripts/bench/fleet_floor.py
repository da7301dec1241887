"""The engine floor as a fleet: what a bare-bones Streams engine's step costs when K of
its worker processes share one load, measured the way the fleet benchmark measures ours.

    python -m scripts.bench.fleet_floor --port 6412 --workers 1,20
    python -m scripts.bench.fleet_floor --port 6412 --workers 1,2,4,8,20 --per-worker 10

`scripts.bench.fleet` runs it beside our rows (unless --no-floor). The floor's worker is
`../shared/bench/floor_wf.py worker` as it is (XREADGROUP COUNT 64 BLOCK, one EVALSHA per
task that appends the history event, acks and answers, one pipeline per batch). The
load has our signal rounds' shape: `--workflows` workflows, each sent its next step once
its previous one was answered, all at once, `--rounds` steps each. A step is one task
read and committed by a worker: one wake-up per step when each worker sees one task at
a time. Per step: the worker processes' CPU (/proc/PID/task/*/schedstat: nanoseconds
on a CPU, all threads), the server's (INFO cpu), and the workers' wake-ups (voluntary
context switches, /proc/PID/status). What the floor pays at K=20 against K=1 is what
this machine charges any Python engine for spreading one load over K processes: our
ratios are read against it (docs/benchmarks.md, "Fleet").
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

from scripts.bench.util import REPO, redis_cpu_s, run_async

FLOOR = REPO.parent / "shared" / "bench" / "floor_wf.py"
#: The floor's own stream and group names (floor_wf.py).
TASKS, DONE, GROUP = "fl:tasks", "fl:done", "w"
#: The floor's last step number: a task with it answers on the done stream.
LAST_STEP = 3
STEP_TIMEOUT = 120.0


@dataclass
class FloorRow:
    """One measuring window of the floor: `steps` steps on `workers` processes, driving
    `workflows` of them."""

    #: "200 workflows" (a fixed total) or "10/worker" (per_worker x K workflows).
    load: str
    workers: int
    workflows: int
    steps: int
    seconds: float
    worker_cpu_s: float
    redis_cpu_s: float
    wakeups: int

    @property
    def worker_ms(self) -> float:
        return self.worker_cpu_s * 1000 / self.steps

    @property
    def redis_ms(self) -> float:
        return self.redis_cpu_s * 1000 / self.steps

    @property
    def wakeups_per_step(self) -> float:
        return self.wakeups / self.steps

    def to_json(self) -> dict[str, float | int]:
        return vars(self) | {"worker_ms": self.worker_ms, "redis_ms": self.redis_ms,
                             "wakeups_per_step": self.wakeups_per_step}


def cpu_ns(pid: int) -> int:
    """Nanoseconds process `pid` has run on a CPU, all its threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def voluntary_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


class FloorFleet:
    """K floor worker processes on the server at `port`, and a driver of step rounds."""

    def __init__(self, port: int, workers: int, script: Path = FLOOR) -> None:
        if not script.exists():
            raise FileNotFoundError(f"no engine floor at {script}")
        self.port = port
        self.sync = redis.Redis(host="127.0.0.1", port=port)
        self._clear()
        self.sync.xgroup_create(TASKS, GROUP, id="0", mkstream=True)
        self.procs = [
            subprocess.Popen([sys.executable, str(script), "worker", "--port", str(port),
                              "--name", f"w{i}"])
            for i in range(workers)
        ]
        try:
            self._wait_ready(workers)
        except BaseException:
            self.close()
            raise

    def _clear(self) -> None:
        for key in self.sync.scan_iter("fl:*", count=1000):
            self.sync.delete(key)

    def _wait_ready(self, workers: int) -> None:
        """Until every worker blocks in its read (Redis 7.0 names no consumer before a
        read that returned something: the server's client list tells instead)."""
        deadline = time.monotonic() + 60
        while sum(c.get("cmd") == "xreadgroup" for c in self.sync.client_list()) < workers:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a floor worker exited at start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} floor workers not reading after 60 s")
            time.sleep(0.05)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self._clear()
        self.sync.close()

    async def rounds(self, workflows: int, steps_each: int) -> int:
        """Each of `workflows` workflows takes `steps_each` steps, the next sent once the
        previous was answered, all workflows at once. Returns the steps taken."""
        r = aredis.Redis(host="127.0.0.1", port=self.port)
        try:
            last = (await r.xinfo_stream(DONE))["last-generated-id"] if await r.exists(
                DONE) else "0-0"
            left = {f"f{i}": steps_each for i in range(workflows)}

            async def send(wids: Sequence[str]) -> None:
                pipe = r.pipeline(transaction=False)
                for wid in wids:
                    left[wid] -= 1
                    pipe.xadd(TASKS, {"wid": wid, "k": LAST_STEP, "v": left[wid]})
                await pipe.execute()

            await send(list(left))
            answered = 0
            deadline = time.monotonic() + STEP_TIMEOUT
            while answered < workflows * steps_each:
                if time.monotonic() > deadline:
                    raise TimeoutError("the floor fleet stopped answering")
                reply: Any = await r.xread({DONE: last}, count=1000, block=1000)
                if not reply:
                    continue
                entries = reply[0][1]
                last = entries[-1][0]
                answered += len(entries)
                wids = [f[b"wid"].decode() for _, f in entries]
                await send([wid for wid in wids if left[wid] > 0])
            await r.xtrim(DONE, maxlen=0)
            await r.xtrim(TASKS, maxlen=0)
            return workflows * steps_each
        finally:
            await r.aclose()

    def measure(self, load: str, workflows: int, steps_each: int) -> FloorRow:
        """One window: CPU and wake-ups of the workers and the server around `rounds`."""
        pids = [p.pid for p in self.procs]
        cpu0 = sum(map(cpu_ns, pids))
        wake0 = sum(map(voluntary_switches, pids))
        redis0 = redis_cpu_s(self.sync)
        t0 = time.monotonic()
        steps = run_async(self.rounds(workflows, steps_each))
        seconds = time.monotonic() - t0
        return FloorRow(
            load=load,
            workers=len(pids),
            workflows=workflows,
            steps=steps,
            seconds=seconds,
            worker_cpu_s=(sum(map(cpu_ns, pids)) - cpu0) / 1e9,
            redis_cpu_s=redis_cpu_s(self.sync) - redis0,
            wakeups=sum(map(voluntary_switches, pids)) - wake0,
        )


def floor_rows(port: int, worker_counts: Sequence[int], workflows: int, rounds: int,
               warmup: int, per_worker: int = 0, script: Path = FLOOR) -> list[FloorRow]:
    """For each K: a warm-up, then `rounds` steps of each of `workflows` workflows; with
    `per_worker`, also per_worker x K workflows with as many steps in all."""
    rows: list[FloorRow] = []
    for k in worker_counts:
        fleet = FloorFleet(port, k, script)
        try:
            run_async(fleet.rounds(workflows, warmup))
            rows.append(fleet.measure(f"{workflows} workflows", workflows, rounds))
            if per_worker and per_worker * k <= workflows:
                driven = per_worker * k
                rows.append(fleet.measure(f"{per_worker}/worker", driven,
                                          rounds * (workflows // driven)))
        finally:
            fleet.close()
    return rows


def table(rows: Sequence[FloorRow]) -> str:
    """Markdown: per K, worker and Redis CPU per step, with ratios to the K=1 row of the
    same load (the fixed total, or so many workflows per worker), and wake-ups per step."""
    lines = [
        "| engine floor, load | workers | worker CPU ms/step | Redis CPU ms/step "
        "| wake-ups/step | steps |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    base: dict[str, FloorRow] = {}
    for row in rows:
        first = base.setdefault(row.load, row)

        def ratio(value: float, of: float, first: FloorRow = first, row: FloorRow = row) -> str:
            return "" if first is row or not of else f" ({value / of:.1f}x)"

        lines.append(
            f"| {row.load} | {row.workers} | {row.worker_ms:.3f}"
            f"{ratio(row.worker_ms, first.worker_ms)} | {row.redis_ms:.3f}"
            f"{ratio(row.redis_ms, first.redis_ms)} | {row.wakeups_per_step:.2f} "
            f"| {row.steps:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.fleet_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="a private server's port")
    p.add_argument("--workers", default="1,20")
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--per-worker", type=int, default=0)
    p.add_argument("--script", type=Path, default=FLOOR)
    args = p.parse_args(argv)
    counts = [int(v) for v in args.workers.split(",") if v.strip()]
    rows = floor_rows(args.port, counts, args.workflows, args.rounds, args.warmup,
                      args.per_worker, args.script)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
