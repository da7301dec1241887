"""Where the extra Redis CPU of a 3-master cluster goes: per command and per master, the
1-master and the 3-master cluster side by side, each loaded and idle (issue 12).

    python -m scripts.bench.cluster_cpu --ports 7440-7443
    python -m scripts.bench.cluster_cpu --ports 7440-7443 --packed-ports 7444-7446 --repeat 6

Run from the repository root. `--ports` are four free ports (and their bus ports
+10000): the first for a 1-master cluster, the next three for a 3-master cluster, all
started for the run and torn down after (scripts/cluster.py); the 3-master cluster's
`--shards` shards are moved to `shards / 3` per master before the namespace is used.
`--packed-ports` (three more) adds a control: a 3-master cluster with every shard on its
first master (the same cluster bus and crons as 3 masters, the work of 1).
On each, the workload of scripts/bench/cluster_scale.py (`Fleet` workflows grown to
~`--events` events, not measured). Then `--repeat` rounds, the deployments' order
rotated and reversed from round to round (the shared machine's load drifts); each
deployment's turn measures `--alone` seconds with no worker (the servers' cron and
cluster bus), then starts `--workers` fresh worker processes and, after the warm-up:

1. loaded: CONFIG RESETSTAT on every master, INFO cpu before; `--rounds` signal rounds
   and a burst of `--activities` activities per workflow; INFO cpu and INFO
   commandstats after (calls and usec per command, summed over the masters);
2. idle, the same workers still connected, nothing to do (blocked task reads, timer
   scans, presence, schedules, the cluster bus's cron and gossip): after `--settle`
   seconds, the same measurement over as many seconds as the loaded window took.

Reported per step (loaded) and per second (idle): calls and server usec per command
summed over the masters, 3 masters against 1; used_cpu_user / used_cpu_sys; the client
socket reads (INFO stats `total_reads_processed`); the servers' wake-ups (voluntary
context switches, /proc/PID/status) and preemptions; the cluster bus messages (CLUSTER
INFO `cluster_stats_messages_sent` + `..._received`, halved); the workers' own round
trips and commands (scripts/bench/counters.py). INFO commandstats times commands by the
wall clock: on a loaded machine a preempted command's usec exceeds its CPU. Commands a
Redis Function runs (`redis.call`) are counted under their own names in INFO
commandstats as well as inside the FCALL's usec: the "top level" figures count the
FCALLs and what the clients sent, not those.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from scripts.bench.cluster_scale import Deployment, balance, shard_slots, slot_owners
from scripts.bench.fleet_drive import snapshot, start_workers, stop_workers
from scripts.bench.info_stats import (
    CLIENT_SENT,
    FCALLS,
    CmdStat,
    bus_messages,
    cpu_split,
    parse_commandstats,
    parse_info,
    parse_switches,
    summed,
    top_level,
)
from scripts.bench.util import OUT, run_async
from scripts.cluster import LocalCluster, move_slot, parse_ports

# ---------------------------------------------------------------- measuring

_NODES: dict[int, Any] = {}


def _node(port: int) -> Any:
    """One connection per node for the whole run: a new one per reading would show up
    as the node's HELLO and connection handling."""
    r = _NODES.get(port)
    if r is None:
        r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=10,
                        single_connection_client=True)
        # Raw text: parsed here (parse_info), the same for every section.
        r.set_response_callback("INFO", lambda resp, **_: resp)
        r.set_response_callback("CLUSTER INFO", lambda resp, **_: resp)
        _NODES[port] = r
    return r


def proc_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process so far: a server's
    voluntary ones are its event loop's sleeps (each one wake-up later), involuntary
    ones the times the kernel took the core away (a loaded machine)."""
    return parse_switches(Path(f"/proc/{pid}/status").read_text())


@dataclass
class Reading:
    user: float
    sys: float
    bus: int
    #: Socket reads and writes the server did for its clients (INFO stats).
    reads: int
    writes: int
    wakeups: int
    preempted: int


def read(port: int) -> Reading:
    r = _node(port)
    info = parse_info(r.execute_command("INFO", "everything"))
    bus = parse_info(r.execute_command("CLUSTER", "INFO"))
    user, sys_ = cpu_split(info)
    voluntary, involuntary = proc_switches(int(info["process_id"]))
    return Reading(user, sys_, bus_messages(bus), int(info["total_reads_processed"]),
                   int(info["total_writes_processed"]), voluntary, involuntary)


def resetstat(port: int) -> None:
    _node(port).execute_command("CONFIG", "RESETSTAT")


def commandstats(port: int) -> dict[str, CmdStat]:
    return parse_commandstats(_node(port).execute_command("INFO", "commandstats"))


@dataclass
class Window:
    """One measured window of one deployment, over all its masters."""

    seconds: float
    steps: int
    user: list[float]
    sys: list[float]
    bus: int
    reads: int
    writes: int
    wakeups: int
    preempted: int
    commands: dict[str, CmdStat]
    per_master_commands: list[dict[str, CmdStat]]
    worker_round_trips: int = 0
    worker_commands: int = 0


@dataclass
class Totals:
    name: str
    loaded: list[Window] = field(default_factory=list)
    idle: list[Window] = field(default_factory=list)
    #: No worker: the servers' own cron and cluster bus (and the driver's client).
    alone: list[Window] = field(default_factory=list)


def _measure_start(ports: Sequence[int]) -> list[Reading]:
    # RESETSTAT also zeroes total_reads/writes_processed: read after it, subtract.
    for p in ports:
        resetstat(p)
    return [read(p) for p in ports]


def _measure_end(ports: Sequence[int], before: Sequence[Reading], seconds: float,
                 steps: int) -> Window:
    per = [commandstats(p) for p in ports]
    after = [read(p) for p in ports]
    # CONFIG RESETSTAT and the readings themselves are not the workload's.
    for stats in per:
        for name in ("config|resetstat", "info", "cluster|info"):
            stats.pop(name, None)

    def delta(attr: str) -> int:
        return sum(getattr(a, attr) - getattr(b, attr)
                   for a, b in zip(after, before, strict=True))

    return Window(
        seconds=seconds, steps=steps,
        user=[a.user - b.user for a, b in zip(after, before, strict=True)],
        sys=[a.sys - b.sys for a, b in zip(after, before, strict=True)],
        # Each message is counted once sent and once received: halve.
        bus=delta("bus") // 2,
        # This script's own reading (an INFO, CLUSTER INFO and INFO commandstats per
        # node: one read and one write each) is left out.
        reads=delta("reads") - 3 * len(ports), writes=delta("writes") - 3 * len(ports),
        wakeups=delta("wakeups") - 3 * len(ports), preempted=delta("preempted"),
        commands=summed(per), per_master_commands=per)


async def turn(d: Deployment, args: argparse.Namespace, totals: Totals) -> None:
    fleet = d.fleet
    assert fleet is not None
    before = _measure_start(d.ports)
    t0 = time.monotonic()
    await asyncio.sleep(args.alone)
    totals.alone.append(_measure_end(d.ports, before, time.monotonic() - t0, 0))
    procs = start_workers(d.url, fleet.prefix, args.workers, 100_000)
    probe = redis.Redis(host="127.0.0.1", port=d.ports[0])
    try:
        await asyncio.sleep(args.settle)
        await fleet.ping_rounds(args.warmup)
        w0 = snapshot(procs, probe)
        before = _measure_start(d.ports)
        t0 = time.monotonic()
        steps = await fleet.ping_rounds(args.rounds)
        steps += await fleet.activity_burst(args.activities)
        seconds = time.monotonic() - t0
        loaded = _measure_end(d.ports, before, seconds, steps)
        w1 = snapshot(procs, probe)
        loaded.worker_round_trips = w1.counts.get("round_trips", 0) - w0.counts.get(
            "round_trips", 0)
        loaded.worker_commands = w1.counts.get("commands", 0) - w0.counts.get("commands", 0)
        totals.loaded.append(loaded)
        await asyncio.sleep(args.settle)
        w0 = snapshot(procs, probe)
        before = _measure_start(d.ports)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        idle = _measure_end(d.ports, before, time.monotonic() - t0, 0)
        w1 = snapshot(procs, probe)
        idle.worker_round_trips = w1.counts.get("round_trips", 0) - w0.counts.get(
            "round_trips", 0)
        idle.worker_commands = w1.counts.get("commands", 0) - w0.counts.get("commands", 0)
        totals.idle.append(idle)
    finally:
        stop_workers(procs)
        probe.close()
    cpu = sum(loaded.user) + sum(loaded.sys)
    icpu = sum(idle.user) + sum(idle.sys)
    log(f"   {d.name}: {steps} steps in {seconds:.1f} s, Redis {cpu / steps * 1e6:.1f} us/step; "
        f"idle {icpu / idle.seconds * 1e3:.1f} ms/s")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pack(ports: Sequence[int], shards: int) -> None:
    """Move every shard's slot to the first master, before the namespace is used."""
    masters = sorted(ports)
    owners = slot_owners(masters[0])
    for slot in shard_slots(shards):
        if owners[slot] != masters[0]:
            move_slot(slot, owners[slot], masters[0], masters)


async def run(args: argparse.Namespace, workdir: Path) -> list[Totals]:
    one, three = args.port_list[:1], args.port_list[1:]
    packed: list[int] = args.packed_list
    with contextlib.ExitStack() as stack:
        stack.enter_context(LocalCluster(one, masters=1, workdir=workdir / "one"))
        stack.enter_context(LocalCluster(three, masters=3, workdir=workdir / "three"))
        await asyncio.to_thread(balance, three, args.shards)
        deps = [Deployment("1 master", f"redis://127.0.0.1:{one[0]}", one, True),
                Deployment("3 masters", f"redis://127.0.0.1:{three[0]}", three, True)]
        if packed:
            stack.enter_context(LocalCluster(packed, masters=3, workdir=workdir / "packed"))
            await asyncio.to_thread(pack, packed, args.shards)
            deps.append(Deployment(PACKED, f"redis://127.0.0.1:{packed[0]}", packed, True))
        totals = [Totals(d.name) for d in deps]
        try:
            for d in deps:
                await d.grow(args)
            for i in range(args.repeat):
                # Each deployment first, middle and last in turn: the load drifts.
                order = list(range(len(deps)))
                order = order[i % len(order):] + order[: i % len(order)]
                for k in order if i % 2 == 0 else order[::-1]:
                    await turn(deps[k], args, totals[k])
        finally:
            for d in deps:
                await d.close()
    return totals


PACKED = "3 masters, all shards on one"


# ---------------------------------------------------------------- report

def _cpu(w: Window) -> float:
    return sum(w.user) + sum(w.sys)


def _sum_cmds(ws: Sequence[Window]) -> dict[str, CmdStat]:
    return summed([w.commands for w in ws])


def command_table(one: Sequence[Window], three: Sequence[Window], *, per: str,
                  top: int = 18) -> list[str]:
    """Rows: command, calls and usec per step (per: "step") or per second ("s"),
    1 master, 3 masters, and the difference in usec; sorted by the difference."""
    def denom(ws: Sequence[Window]) -> float:
        return float(sum(w.steps for w in ws)) if per == "step" else sum(w.seconds for w in ws)

    a, b = _sum_cmds(one), _sum_cmds(three)
    da, db = denom(one), denom(three)
    names = sorted(set(a) | set(b), key=lambda n: -abs(
        b.get(n, CmdStat()).usec / db - a.get(n, CmdStat()).usec / da))
    lines = [f"| command | calls/{per}, 1 master | calls/{per}, 3 masters | usec/{per}, 1 master "
             f"| usec/{per}, 3 masters | usec/{per}, difference |",
             "|---|---|---|---|---|---|"]
    for n in names[:top]:
        x, y = a.get(n, CmdStat()), b.get(n, CmdStat())
        lines.append(f"| {n} | {x.calls / da:.3f} | {y.calls / db:.3f} | {x.usec / da:.2f} | "
                     f"{y.usec / db:.2f} | {y.usec / db - x.usec / da:+.2f} |")
    return lines


def _range(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def render(totals: Sequence[Totals], info: Mapping[str, str]) -> str:
    one, three = totals[0], totals[1]
    inner = _inner_names([w for t in totals for w in t.loaded])

    def top_usec(ws: Sequence[Window]) -> float:
        return float(top_level(_sum_cmds(ws), inner).usec)

    def top_calls(ws: Sequence[Window]) -> float:
        return float(top_level(_sum_cmds(ws), inner).calls)

    head = " | ".join(t.name for t in totals)
    ratios = " | ".join(f"{t.name} / 1 master (paired windows)" for t in totals[1:])
    rows = [f"| per step, loaded (sum of windows) | {head} | {ratios} |",
            "|---|" + "---|" * (2 * len(totals) - 1)]

    def row(label: str, f: Any, fmt: str = "{:.1f}") -> None:
        per = [f(t.loaded) / sum(w.steps for w in t.loaded) for t in totals]
        cells = [fmt.format(v) for v in per]
        for t, y in zip(totals[1:], per[1:], strict=True):
            pairs = [f([b]) / b.steps / (f([a]) / a.steps)
                     for a, b in zip(one.loaded, t.loaded, strict=True) if f([a])]
            cells.append(f"{y / per[0]:.2f} ({_range(pairs)})" if per[0] else "-")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    row("Redis CPU us (INFO cpu)", lambda ws: sum(_cpu(w) for w in ws) * 1e6)
    row("  user us", lambda ws: sum(sum(w.user) for w in ws) * 1e6)
    row("  sys us", lambda ws: sum(sum(w.sys) for w in ws) * 1e6)
    row("commands' usec, top level (INFO commandstats, wall time)", top_usec)
    row("top-level calls (server)", top_calls, "{:.2f}")
    row("FCALL + FCALL_RO calls", lambda ws: sum(
        s.calls for n, s in _sum_cmds(ws).items() if n in FCALLS), "{:.2f}")
    row("worker round trips", lambda ws: sum(w.worker_round_trips for w in ws), "{:.3f}")
    row("worker commands", lambda ws: sum(w.worker_commands for w in ws), "{:.2f}")
    row("server socket reads (INFO stats)", lambda ws: sum(w.reads for w in ws), "{:.3f}")
    row("server wake-ups (voluntary context switches)",
        lambda ws: sum(w.wakeups for w in ws), "{:.3f}")
    row("server preemptions (involuntary)", lambda ws: sum(w.preempted for w in ws), "{:.3f}")
    row("cluster bus messages", lambda ws: sum(w.bus for w in ws), "{:.3f}")

    def idle_row(label: str, f: Any, fmt: str = "{:.2f}", kind: str = "idle") -> str:
        vals = []
        for t in totals:
            ws = getattr(t, kind)
            secs = sum(w.seconds for w in ws)
            vals += [f(ws) / secs, f(ws) / secs / len(ws[0].user)]
        return f"| {label} | " + " | ".join(fmt.format(v) for v in vals) + " |"

    idle = ["| per second | " + " | ".join(f"{t.name} | per master" for t in totals) + " |",
            "|---|" + "---|" * (2 * len(totals)),
            idle_row("no worker: Redis CPU ms", lambda ws: sum(_cpu(w) for w in ws) * 1e3,
                     kind="alone"),
            idle_row("no worker: wake-ups", lambda ws: sum(w.wakeups for w in ws), "{:.1f}",
                     kind="alone"),
            idle_row("no worker: cluster bus messages", lambda ws: sum(w.bus for w in ws),
                     "{:.1f}", kind="alone"),
            idle_row("idle workers: Redis CPU ms", lambda ws: sum(_cpu(w) for w in ws) * 1e3),
            idle_row("idle workers: top-level calls", top_calls, "{:.1f}"),
            idle_row("idle workers: socket reads", lambda ws: sum(w.reads for w in ws),
                     "{:.1f}"),
            idle_row("idle workers: wake-ups", lambda ws: sum(w.wakeups for w in ws), "{:.1f}"),
            idle_row("idle workers: cluster bus messages", lambda ws: sum(w.bus for w in ws),
                     "{:.1f}")]
    def idle_per_step(t: Totals) -> float:
        per_s = sum(_cpu(w) for w in t.idle) / sum(w.seconds for w in t.idle)
        return per_s * sum(w.seconds for w in t.loaded) / sum(w.steps for w in t.loaded) * 1e6

    rate = ", ".join(f"{t.name} {idle_per_step(t):.1f}" for t in totals)
    out = [
        "Loaded (per step):", "", *rows, "",
        "Per command, loaded (per step, summed over masters; sorted by the difference):", "",
        *command_table(one.loaded, three.loaded, per="step"), "",
        "Idle (per second): no worker, then the same workers connected with nothing to do:",
        "", *idle, "",
        f"Idle workers' Redis CPU at the loaded windows' step rate, us per step: {rate}.", "",
        "Per command, idle workers (per second, summed over masters):", "",
        *command_table(one.idle, three.idle, per="s", top=12), "",
        f"Commands run inside Functions (counted under FCALL too): {', '.join(sorted(inner))}",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
    ]
    return "\n".join(out)


def _inner_names(ws: Sequence[Window]) -> set[str]:
    """Commands that only Functions run here: from the engine's Lua sources, the names
    in `redis.call('NAME'` / `redis.pcall('NAME'` (lower case)."""
    root = Path(__file__).resolve().parents[2] / "engine" / "lua"
    names: set[str] = set()
    for path in root.rglob("*.lua"):
        for m in re.finditer(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]", path.read_text()):
            names.add(m.group(1).lower())
    # Both the clients and the Functions send these: counted as the clients' (the
    # worker's blocked task reads are XREADGROUPs; a Function's is one COUNT 1 read).
    return (names & set(_sum_cmds(ws))) - CLIENT_SENT


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.cluster_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ports", required=True, help="4 ports: 1-master cluster, then 3 masters")
    p.add_argument("--packed-ports", default="",
                   help="3 more ports: also a 3-master cluster with every shard on one master")
    p.add_argument("--dir", type=Path, default=None, help="cluster files (default: a tmp dir)")
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--shards", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--activities", type=int, default=30)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--alone", type=float, default=3.0,
                   help="seconds measured with no worker, before each turn")
    p.add_argument("--repeat", type=int, default=3, help="rounds of (1 master, 3 masters)")
    p.add_argument("--json", type=Path, default=OUT / "cluster_cpu.json")
    args = p.parse_args(argv)
    args.port_list = parse_ports(args.ports)
    if len(args.port_list) != 4:
        p.error("--ports: 4 ports (1-master cluster, then the 3 masters)")
    args.packed_list = parse_ports(args.packed_ports) if args.packed_ports else []
    if len(args.packed_list) not in (0, 3):
        p.error("--packed-ports: 3 ports")
    if args.shards % 3:
        p.error("--shards must be a multiple of 3")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=False).stdout.strip()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redurable-cluster-cpu-") as tmp:
        totals = run_async(run(args, args.dir or Path(tmp)))
    info = {
        "command": shlex.join(["python", "-m", "scripts.bench.cluster_cpu", *argv]),
        "git": sha,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "duration": f"{(time.monotonic() - t0) / 60:.1f} min",
        "load before the run": load,
    }
    body = render(totals, info)
    print(body)
    args.json.parent.mkdir(exist_ok=True, parents=True)
    args.json.write_text(json.dumps(
        {t.name: {"loaded": [_dump(w) for w in t.loaded], "idle": [_dump(w) for w in t.idle],
                  "alone": [_dump(w) for w in t.alone]}
         for t in totals}, indent=1))
    return 0


def _dump(w: Window) -> dict[str, Any]:
    return {"seconds": w.seconds, "steps": w.steps, "user": w.user, "sys": w.sys,
            "bus": w.bus, "reads": w.reads, "writes": w.writes, "wakeups": w.wakeups,
            "preempted": w.preempted, "worker_round_trips": w.worker_round_trips,
            "worker_commands": w.worker_commands,
            "per_master_commands": [{n: [s.calls, s.usec] for n, s in m.items()}
                                    for m in w.per_master_commands]}


if __name__ == "__main__":
    sys.exit(main())
