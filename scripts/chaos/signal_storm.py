"""Scenario 6, signal storm: one SignalLog workflow (scripts/chaos/poison_workflows.py)
gets `--signals` signals 0..N-1 from one sender, in order, while the worker process
running it is SIGKILLed `--kills` times (at even intervals of the stream of signals)
and replaced. The workflow returns the signals in the order it applied them: it must be
exactly 0..N-1, each once, and the history must hold N signal events in that order
(the shared checker checks the rest: contiguous event ids, one completion).

    python -m scripts.chaos.signal_storm [--redis-url URL] [--signals 10000] [--kills 2]
        [--duration 10]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio

from engine.keys import GROUP
from scripts.chaos import checker
from scripts.chaos.common import drop_client, run_on_server, scenario_parser, unique_prefix
from scripts.chaos.paced_storm import (
    PacedStorm,
    PacedStormConfig,
    PacedStormReport,
    print_report,
)
from scripts.chaos.poison_workflows import SignalLog
from sdk import Client
from tests.integration.worker_proc import WorkerProcess

MODULE = "scripts.chaos.poison_workflows"
TASK_QUEUE = "signals"
WORKFLOW_ID = "signal-storm"


@dataclass(frozen=True)
class StormConfig(PacedStormConfig):
    signals: int = 10_000


@dataclass
class SignalStormReport(PacedStormReport):
    cfg: StormConfig
    #: Kills that hit the worker while it held a workflow task of the storm's workflow.
    kills_holding: int = 0
    finish_s: float = 0.0
    history_signals: int = 0

    def line(self) -> str:
        return (
            f"signal storm: {self.cfg.signals} signals in {self.send_s:.1f} s "
            f"({self.cfg.signals / max(self.send_s, 1e-9):.0f}/s), {self.kills} worker kills "
            f"({self.kills_holding} while it held the workflow's task), "
            f"result {self.finish_s:.1f} s after the last signal; {self.history_signals} "
            f"signal events in history; {len(self.problems)} problems; "
            f"{self.verdict.summary()}"
        )


async def _holds(client: Client, stream: str, consumer: str) -> bool:
    pending: Any = await client.redis.xpending_range(stream, GROUP, "-", "+", 1,
                                                     consumername=consumer)
    return bool(pending)


def _order_problems(applied: list[Any], n: int) -> list[str]:
    if applied == list(range(n)):
        return []
    seen = set(applied)
    missing = [i for i in range(n) if i not in seen]
    dupes = len(applied) - len(seen)
    first_bad = next((i for i, v in enumerate(applied) if v != i), None)
    return [f"applied {len(applied)} signals: {len(missing)} missing, {dupes} duplicates, "
            f"first out of order at position {first_bad}"]


async def run(url: str, cfg: StormConfig) -> SignalStormReport:
    report = SignalStormReport(cfg)
    prefix = unique_prefix("signals")
    client = await Client.connect(url, prefix=prefix)
    storm = PacedStorm(url, prefix, TASK_QUEUE, MODULE, sends=cfg.signals, cfg=cfg)
    stream = client.keys.workflow_tasks(client.keys.shard(WORKFLOW_ID), TASK_QUEUE)

    async def send() -> None:
        started = time.monotonic()
        await storm.send(lambda i: handle.signal(SignalLog.add, i))
        report.send_s = time.monotonic() - started

    async def before_kill(worker: WorkerProcess) -> None:
        # Wait (briefly) for a moment when it holds the workflow's task.
        with anyio.move_on_after(1.0):
            while not await _holds(client, stream, worker.identity):
                await anyio.sleep(0.001)
        report.kills_holding += await _holds(client, stream, worker.identity)

    try:
        await storm.start_worker()
        handle = await client.start_workflow(SignalLog.run, cfg.signals, id=WORKFLOW_ID,
                                             task_queue=TASK_QUEUE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(storm.kill, before_kill)
            await send()
        report.kills = storm.kills
        last = time.monotonic()
        with anyio.fail_after(cfg.finish):
            applied = await handle.result()
        report.finish_s = time.monotonic() - last
        report.problems += _order_problems(applied, cfg.signals)
        signals = [e.attributes for e in [e async for e in handle.fetch_history()]
                   if e.type == "WorkflowExecutionSignaled"]
        report.history_signals = len(signals)
        inputs = [a.get("input") for a in signals]
        if inputs != [[i] for i in range(cfg.signals)]:
            report.problems.append("the history's signal events are not 0..N-1 in order")
        report.verdict = await checker.check(client.redis, client.keys, client.codec,
                                             {WORKFLOW_ID: list(range(cfg.signals))})
    finally:
        storm.stop()
        await drop_client(client, prefix)
    return report


def main(argv: list[str] | None = None) -> None:
    p = scenario_parser(__doc__)
    p.add_argument("--signals", type=int, default=StormConfig.signals)
    p.add_argument("--kills", type=int, default=StormConfig.kills)
    p.add_argument("--duration", type=float, default=StormConfig.duration)
    args = p.parse_args(argv)
    cfg = StormConfig(signals=args.signals, kills=args.kills, duration=args.duration)
    print_report(run_on_server(args.redis_url, lambda url: run(url, cfg)))

if __name__ == "__main__":
    main()
