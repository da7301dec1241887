"""The chaos runner: full-size runs of the scenarios, figures into docs/reliability.md.

    python -m scripts.chaos run --all
    python -m scripts.chaos run kill-storm --workflows 200 --redis-url redis://127.0.0.1:6379
    python -m scripts.chaos run redis-crash connection-faults --no-write
    python -m scripts.chaos run cluster-failover cluster-reshard --cluster-ports 7300-7305

Run from the repository root. Each scenario prints its checker verdict and figures,
and (unless --no-write) replaces its own row of the table in docs/reliability.md (rows
of other scenarios are left as they are). The exit code is 1 if any verdict failed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio

from scripts.chaos import (
    connection_faults,
    kill_storm,
    redis_crash,
    runners_b,
    runners_c,
    runners_d,
    runners_e,
)
from scripts.chaos.common import ROOT, run_pytest, server_for, sized

DOC = ROOT / "docs" / "reliability.md"
SCENARIOS = ["kill-storm", "redis-crash", "redis-crash-everysec", "redis-os-crash",
             "connection-faults", "duplicate-delivery"]

Outcome = tuple[bool, str]


async def _kill_storm(args: argparse.Namespace, workdir: Path) -> Outcome:
    with ExitStack() as stack:
        url, server = server_for(args.redis_url, stack)
        cfg = sized(kill_storm.StormConfig(), args.workflows)
        report = await kill_storm.run(url, cfg, workdir)
        return report.verdict.ok and report.unrecovered == 0, (
            f"{cfg.workflows} workflows x (5 activities + 2 timers), {cfg.workers} workers, "
            f"one SIGKILLed every {cfg.kill_every * 1000:g} ms, liveness {cfg.liveness:g} s, "
            f"{server}: {report.line()}")


def _crash(appendfsync: str, lose_last: float) -> Callable[[argparse.Namespace, Path],
                                                          Coroutine[Any, Any, Outcome]]:
    async def scenario(args: argparse.Namespace, workdir: Path) -> Outcome:
        # Starts spread over ~50 s, so several crashes hit a busy system.
        crash = redis_crash.CrashConfig(appendfsync=appendfsync, lose_last=lose_last,
                                        start_pause=0.05)
        cfg = sized(crash, args.workflows)
        report = await redis_crash.run(cfg, workdir)
        ok = report.verdict.ok if not lose_last else not [
            p for p in report.verdict.problems if "disagrees" in p or "event ids" in p]
        how = (f"restarted from an AOF copy {lose_last:g} s older (a simulated OS crash)"
               if lose_last else "restarted from its AOF")
        return ok, (
            f"{cfg.workflows} workflows, {cfg.workers} workers, private redis-server "
            f"SIGKILLed every {cfg.crash_every:g} s and {how}: {report.line()}")
    return scenario


async def _connection_faults(args: argparse.Namespace, workdir: Path) -> Outcome:
    cfg = sized(connection_faults.FaultConfig(), args.workflows)
    report = await connection_faults.run(cfg, workdir)
    ok = report.verdict.ok and not report.stuck_workflows and not report.stuck_entries
    return ok, (
        f"{cfg.workflows} workflows, {cfg.workers} workers, CLIENT KILL every "
        f"{cfg.kill_every * 1000:g} ms, {cfg.cut_rate:.1%} of writes' replies cut: "
        f"{report.line()}")


async def _duplicate_delivery(args: argparse.Namespace, workdir: Path) -> Outcome:
    del workdir
    env_note = f" (REDURABLE_TEST_URL={args.redis_url})" if args.redis_url else ""
    ok, last = await run_pytest("tests/chaos/test_duplicate_delivery.py", args.redis_url)
    return ok, (
        f"a workflow task (both started / one started) and an activity task each held by "
        f"two consumers at once (XCLAIM) and completed by both in one round trip{env_note}: "
        f"exactly one commit landed, the other was rejected as stale; {last}")


RUNNERS = {
    "kill-storm": _kill_storm,
    "redis-crash": _crash("always", 0.0),
    "redis-crash-everysec": _crash("everysec", 0.0),
    "redis-os-crash": _crash("everysec", 0.5),
    "connection-faults": _connection_faults,
    "duplicate-delivery": _duplicate_delivery,
    **runners_b.RUNNERS,  # poison, signal-storm, clock-skew, fuzz
    **runners_c.RUNNERS,  # client-outage, sentinel-failover
    **runners_d.RUNNERS,  # family
    **runners_e.RUNNERS,  # cluster-failover, cluster-reshard
}
SCENARIOS += [s for s in [*runners_b.RUNNERS, *runners_c.RUNNERS, *runners_d.RUNNERS,
                           *runners_e.RUNNERS]
              if s not in SCENARIOS]


def write_row(doc: Path, scenario: str, figures: str, command: str) -> None:
    """Replace this scenario's row of the table (or add it at the table's end)."""
    row = f"| {scenario} | {figures.replace('|', '/')} | `{command}` |"
    lines = doc.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"| {scenario} |"):
            lines[i] = row
            break
    else:
        header = lines.index("| scenario | figures | command |")
        last = header
        while last + 1 < len(lines) and lines[last + 1].startswith("|"):
            last += 1
        lines.insert(last + 1, row)
    doc.write_text("\n".join(lines) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.chaos",
                                description="Chaos scenarios at full size (see docstring).")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenarios")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                     help=f"one or more of: {', '.join(SCENARIOS)}")
    run.add_argument("--all", action="store_true", help="every scenario")
    run.add_argument("--workflows", type=int, help="override the scenario's workflow count")
    run.add_argument("--redis-url", help="server for kill-storm and duplicate-delivery "
                     "(default: an embedded Valkey); the others start a private redis-server")
    run.add_argument("--cluster-ports", help="ports of the cluster scenarios' local "
                     "cluster, like 7300-7305 (default: free ones)")
    run.add_argument("--reshard", choices=("redis-cli", "keys", "whole"),
                     default="redis-cli", help="cluster-reshard: how a slot moves "
                     "(scripts/chaos/cluster_reshard.py)")
    run.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = p.parse_args(argv)
    if args.all:
        args.scenarios = list(SCENARIOS)
    if not args.scenarios:
        p.error("name a scenario or give --all")
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; one of: {', '.join(SCENARIOS)}")
    if args.workflows is not None and args.workflows < 1:
        p.error("--workflows must be at least 1")
    return args


async def main_async(args: argparse.Namespace, argv: Sequence[str]) -> bool:
    ok_all = True
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        for scenario in args.scenarios:
            print(f"== {scenario}", flush=True)
            ok, figures = await RUNNERS[scenario](args, Path(tmp))
            ok_all &= ok
            print(("PASS " if ok else "FAIL ") + figures, flush=True)
            if not args.no_write:
                command = "python -m scripts.chaos run " + " ".join(
                    shlex.quote(a) for a in _command_for(scenario, argv))
                write_row(DOC, scenario, ("" if ok else "**FAILED** ") + figures, command)
    return ok_all


def _command_for(scenario: str, argv: Sequence[str]) -> list[str]:
    """The command that reruns this one scenario with the same options."""
    words: list[str] = [scenario]
    it = iter(argv[1:])
    for a in it:
        if a in ("--workflows", "--redis-url", "--cluster-ports"):
            words += [a, next(it, "")]
        elif a.startswith(("--workflows=", "--redis-url=", "--cluster-ports=")):
            words.append(a)
    return words


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    ok = anyio.run(main_async, args, argv, backend="asyncio")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
