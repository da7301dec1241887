"""The runner's entries (`python -m scripts.chaos run ...`) for scenarios 5-8: poison,
signal storm, clock skew, and the bad-input fuzzing (which is the pytest module itself,
run with many more examples than CI's)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from scripts.chaos import clock_skew, poison, signal_storm
from scripts.chaos.common import run_pytest, server_for, sized

Outcome = tuple[bool, str]
Runner = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Outcome]]


async def _poison(args: argparse.Namespace, workdir: Path) -> Outcome:
    del workdir
    with ExitStack() as stack:
        url, server = server_for(args.redis_url, stack)
        cfg = sized(poison.PoisonConfig(), args.workflows, "healthy")
        report = await poison.run(url, cfg)
        return report.ok, (
            f"{cfg.healthy}+ healthy workflows x 2 phases, {cfg.concurrency} at a time, "
            f"{cfg.workers} workers, max_deliveries {cfg.max_deliveries}, poison fed over "
            f"{cfg.spread:g} s, {server}: {report.line()}")


async def _signal_storm(args: argparse.Namespace, workdir: Path) -> Outcome:
    del workdir
    with ExitStack() as stack:
        url, server = server_for(args.redis_url, stack)
        cfg = sized(signal_storm.StormConfig(), args.workflows, "signals")
        report = await signal_storm.run(url, cfg)
        return report.ok, f"one workflow, paced over {cfg.duration:g} s, {server}: {report.line()}"


async def _clock_skew(args: argparse.Namespace, workdir: Path) -> Outcome:
    del workdir
    faketime, why = clock_skew.ensure_faketime()
    if faketime is None:
        return False, f"not run: {why}"
    with ExitStack() as stack:
        url, server = server_for(args.redis_url, stack)
        cfg = sized(clock_skew.SkewConfig(), args.workflows)
        report = await clock_skew.run(url, cfg, faketime)
        on_time = all(0 <= late < 100 for samples in report.late.values() for late in samples)
        ok = (report.verdict.ok and on_time and report.query_answered
              and report.live_workers == len(cfg.skews))
        return ok, f"{server}: {report.line()}"


async def _fuzz(args: argparse.Namespace, workdir: Path) -> Outcome:
    """The pytest module with 10x CI's examples (it reads REDURABLE_FUZZ_EXAMPLES)."""
    del workdir
    ok, last = await run_pytest("tests/chaos/test_fuzz.py", args.redis_url,
                                {"REDURABLE_FUZZ_EXAMPLES": "400"})
    return ok, (
        "start_workflow, signal, query, CLI input/page-token/dead-letter-id parsing and "
        "payload/task-event decoding over hypothesis-generated ids, names, payloads and "
        f"sizes, 400 examples per server call test (derandomized): {last}")


RUNNERS: dict[str, Runner] = {
    "poison": _poison,
    "signal-storm": _signal_storm,
    "clock-skew": _clock_skew,
    "fuzz": _fuzz,
}
