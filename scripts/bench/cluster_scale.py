"""Cluster scale: Redis CPU per workflow step on each master of a 1-master and a
3-master Redis Cluster running the same workload, and one server with the plain client
against a 1-master cluster with the cluster client (issue 12).

    python -m scripts.bench.cluster_scale --plain-url redis://127.0.0.1:6402 --ports 7403-7406
    python -m scripts.bench.cluster_scale ... --write-docs   # "Cluster scale", docs/benchmarks.md

Run from the repository root. `--plain-url` is a private server nothing else uses (its
whole CPU is measured); `--ports` are four free ports (and their bus ports +10000): the
first for the 1-master cluster, the next three for the 3-master one, each started for
its run and torn down after (scripts/cluster.py). On each deployment, in this order:
plain, 1 master, 3 masters (shards moved so each master serves the same number, before
the namespace is used: `--shards` must be a multiple of 3), and with `--default-layout`
3 masters on `redis-cli --cluster create`'s slot ranges as they are:

1. `--workflows` `Fleet` workflows (scripts/bench/workload.py) grown to ~`--events`
   events by two worker processes (not measured);
2. `--workers` worker processes; `--warmup` signal rounds (not measured); then the
   measured window: `--rounds` signal rounds (each workflow's next signal once its code
   saw the last) and a burst of `--activities` activities per workflow. Each master's
   `used_cpu_sys + used_cpu_user` (INFO cpu) before and after gives Redis CPU per step
   per master; the workers' own CPU per step and steps per wall second come along;
3. every workflow is terminated (one close each), and the cluster bus's pub/sub
   traffic is read around it (CLUSTER INFO `cluster_stats_messages_publish_sent`, the
   forwarded PUBLISHes, and `..._publishshard_sent`): per close.

The plain server and the 1-master cluster are measured in `--repeat` windows each,
alternated (fresh workers each window), on fleets grown once; each 3-master deployment
in as many windows (histories grow by each window's steps, the same for all). The
machine's cores are shared, so the figures are ratios within one run: each master's
share of the Redis CPU, the 3-master total against 1 master, and the plain server's
throughput against the 1-master cluster's (the median of the paired windows' ratios,
and their range). Raw results: .bench-out/cluster_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import redis

from engine.keys import Keys
from engine.resp_cluster import key_slot
from scripts.bench.fleet_drive import FleetSet, snapshot, start_workers, stop_workers
from scripts.bench.util import OUT, REPO, run_async
from scripts.cluster import LocalCluster, move_slot, parse_ports

DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- cluster-scale:begin (python -m scripts.bench.cluster_scale --write-docs) -->"
END = "<!-- cluster-scale:end -->"
GROWERS = 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.cluster_scale",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plain-url", required=True, help="a private single server")
    p.add_argument("--ports", required=True, help="4 ports: 1-master cluster, then 3 masters")
    p.add_argument("--dir", type=Path, default=None, help="cluster files (default: a tmp dir)")
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--events", type=int, default=30, help="history length before measuring")
    p.add_argument("--shards", type=int, default=6, help="namespace shards (a multiple of 3)")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30, help="measured signals per workflow")
    p.add_argument("--activities", type=int, default=30, help="measured activities per workflow")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=4,
                   help="windows each for the plain server and the 1-master cluster")
    p.add_argument("--default-layout", action="store_true",
                   help="also 3 masters on the default slot ranges (uneven shards)")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    args.port_list = parse_ports(args.ports)
    if len(args.port_list) != 4:
        p.error("--ports: 4 ports (1-master cluster, then the 3 masters)")
    if args.shards % 3:
        p.error("--shards must be a multiple of 3 (an even split over 3 masters)")
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=10)


def cpu_s(port: int) -> float:
    with _node(port) as r:
        info: Any = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def bus_pubsub(ports: Sequence[int]) -> tuple[int, int]:
    """Summed over nodes: (forwarded PUBLISH, SPUBLISH to the shard's replicas) messages
    sent on the cluster bus so far."""
    publish = shard = 0
    for port in ports:
        with _node(port) as r:
            text: str = r.execute_command("CLUSTER", "INFO")
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name == "cluster_stats_messages_publish_sent":
                publish += int(value)
            elif name == "cluster_stats_messages_publishshard_sent":
                shard += int(value)
    return publish, shard


def slot_owners(port: int) -> dict[int, int]:
    """slot -> port of the master serving it (CLUSTER SLOTS)."""
    with _node(port) as r:
        ranges: Any = r.execute_command("CLUSTER", "SLOTS")
    owners: dict[int, int] = {}
    for first, last, master, *_ in ranges:
        for slot in range(int(first), int(last) + 1):
            owners[slot] = int(master[1])
    return owners


def shard_slots(shards: int) -> list[int]:
    """The slot of each shard (its tag `{s}`: the same in every namespace)."""
    keys = Keys("any", shards)
    return [key_slot(keys.timers(s)) for s in range(shards)]


def balance(ports: Sequence[int], shards: int) -> None:
    """Move shard s's slot to master s mod len(ports), before the namespace is used."""
    masters = sorted(ports)
    owners = slot_owners(masters[0])
    for s, slot in enumerate(shard_slots(shards)):
        target = masters[s % len(masters)]
        if owners[slot] != target:
            move_slot(slot, owners[slot], target, masters)


def per_master(ports: Sequence[int], keys: Keys, ids: Sequence[str]) -> tuple[list[int], list[int]]:
    """Shards, and workflows of `ids`, that each master serves."""
    owners = slot_owners(ports[0])
    slots = shard_slots(keys.shards)
    shards = [sum(1 for slot in slots if owners[slot] == port) for port in ports]
    workflows = [sum(1 for i in ids if owners[slots[keys.shard(i)]] == port) for port in ports]
    return shards, workflows


@dataclass
class Result:
    name: str
    ports: list[int]
    shards: list[int]
    workflows: list[int]
    steps: int
    seconds: float
    worker_cpu_s: float
    redis_cpu_s: list[float]
    closes: int = 0
    bus_publish: int = 0
    bus_publishshard: int = 0
    events: int = 0
    #: Steps per second of each window.
    rates: list[float] = field(default_factory=list)

    @property
    def total_us(self) -> float:
        return sum(self.redis_cpu_s) / self.steps * 1e6

    def master_us(self) -> list[float]:
        return [c / self.steps * 1e6 for c in self.redis_cpu_s]


class Deployment:
    """One deployment's fleet, grown once; measuring windows and the closes on it."""

    def __init__(self, name: str, url: str, ports: list[int], cluster: bool) -> None:
        self.name, self.url, self.ports, self.cluster = name, url, ports, cluster
        self.result: Result | None = None
        self.fleet: FleetSet | None = None

    async def grow(self, args: argparse.Namespace) -> Deployment:
        log(f"== {self.name}: growing {args.workflows} histories")
        self.fleet = fleet = await FleetSet(
            self.url, args.events, args.workflows, shards=args.shards).open()
        growers = start_workers(self.url, fleet.prefix, GROWERS, 100_000)
        try:
            await fleet.grow()
        finally:
            stop_workers(growers)
        return self

    async def window(self, args: argparse.Namespace) -> None:
        """Fresh workers, the warm-up, then the measured signal rounds and activity
        burst; added to `result` (several windows: their sums, and each one's rate)."""
        fleet = self.fleet
        assert fleet is not None
        procs = start_workers(self.url, fleet.prefix, args.workers, 100_000)
        probe = redis.Redis(host="127.0.0.1", port=self.ports[0])
        try:
            await asyncio.sleep(args.settle)
            await fleet.ping_rounds(args.warmup)
            events = await fleet.mean_events()
            c0, w0 = [cpu_s(p) for p in self.ports], snapshot(procs, probe)
            steps = await fleet.ping_rounds(args.rounds)
            steps += await fleet.activity_burst(args.activities)
            c1, w1 = [cpu_s(p) for p in self.ports], snapshot(procs, probe)
        finally:
            stop_workers(procs)
            probe.close()
        cpu = [b - a for a, b in zip(c0, c1, strict=True)]
        seconds = w1.at - w0.at
        if self.result is None:
            ids = [h.id for h in fleet.handles]
            shards, workflows = (per_master(self.ports, fleet.client.keys, ids) if self.cluster
                                 else ([args.shards], [len(ids)]))
            self.result = Result(self.name, self.ports, shards, workflows, 0, 0.0, 0.0,
                                 [0.0] * len(cpu), events=events)
        r = self.result
        r.steps += steps
        r.seconds += seconds
        r.worker_cpu_s += w1.worker_cpu_s - w0.worker_cpu_s
        r.redis_cpu_s = [a + b for a, b in zip(r.redis_cpu_s, cpu, strict=True)]
        r.rates.append(steps / seconds)
        log(f"   {steps} steps in {seconds:.1f} s, Redis {sum(cpu) / steps * 1e6:.1f} us/step "
            f"({', '.join(f'{c / steps * 1e6:.1f}' for c in cpu)})")

    async def closes(self) -> None:
        """Terminate every workflow (one close each) and count the cluster bus's
        pub/sub messages meanwhile."""
        fleet, r = self.fleet, self.result
        assert fleet is not None and r is not None
        before = bus_pubsub(self.ports)
        sem = asyncio.Semaphore(32)

        async def close(handle: Any) -> None:
            async with sem:
                await handle.terminate("cluster_scale")

        await asyncio.gather(*(close(h) for h in fleet.handles))
        after = bus_pubsub(self.ports)
        r.closes = len(fleet.handles)
        r.bus_publish, r.bus_publishshard = after[0] - before[0], after[1] - before[1]

    async def close(self) -> None:
        if self.fleet is not None:
            await self.fleet.close()


async def run(args: argparse.Namespace, workdir: Path) -> list[Result]:
    one, three = args.port_list[:1], args.port_list[1:]
    plain = Deployment("plain server, plain client", args.plain_url,
                       [_port(args.plain_url)], False)
    single = Deployment("1 master", f"redis://127.0.0.1:{one[0]}", one, True)
    results: list[Result] = []
    try:
        with LocalCluster(one, masters=1, workdir=workdir / "one"):
            await plain.grow(args)
            await single.grow(args)
            # Alternated windows (A B B A ...): the machine's load drifts.
            for i in range(args.repeat):
                for deployment in (plain, single) if i % 2 == 0 else (single, plain):
                    await deployment.window(args)
            await single.closes()
            results += [r for r in (plain.result, single.result) if r is not None]
            await single.close()
    finally:
        await plain.close()
    layouts = [("3 masters", True)] + ([("3 masters, default slots", False)]
                                       if args.default_layout else [])
    for name, balanced in layouts:
        with LocalCluster(three, masters=3, workdir=workdir / name.replace(" ", "_")):
            if balanced:
                await asyncio.to_thread(balance, three, args.shards)
            deployment = Deployment(name, f"redis://127.0.0.1:{three[0]}", three, True)
            try:
                await deployment.grow(args)
                for _ in range(args.repeat):
                    await deployment.window(args)
                await deployment.closes()
            finally:
                await deployment.close()
            assert deployment.result is not None
            results.append(deployment.result)
    return results


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def render(results: list[Result], info: dict[str, str]) -> str:
    by = {r.name: r for r in results}
    plain, one = by["plain server, plain client"], by["1 master"]
    lines = [
        "| deployment | shards (workflows) per master | steps/s | worker CPU us/step "
        "| Redis CPU us/step, total | per master | split | split / workflows' split "
        "| total vs 1 master | busiest master vs 1 master | bus pub/sub msgs per close |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = r.master_us()
        shares = [c / sum(r.redis_cpu_s) for c in r.redis_cpu_s]
        split = " / ".join(f"{100 * share:.0f}%" for share in shares)
        # 1.00: a master's share of the Redis CPU is its share of the workflows.
        fair = " / ".join(f"{share / (w / sum(r.workflows)):.2f}" if w else "-"
                          for share, w in zip(shares, r.workflows, strict=True))
        bus = (f"{r.bus_publish / r.closes:.2f} + {r.bus_publishshard / r.closes:.2f}"
               if r.closes else "-")
        lines.append(
            f"| {r.name} | {' + '.join(map(str, r.shards))} "
            f"({' + '.join(map(str, r.workflows))}) | {r.steps / r.seconds:,.0f} | "
            f"{r.worker_cpu_s / r.steps * 1e6:.0f} | {r.total_us:.1f} | "
            f"{' / '.join(f'{u:.1f}' for u in per)} | {split} | {fair} | "
            f"{r.total_us / one.total_us:.2f} | {max(per) / one.total_us:.2f} | {bus} |")
    ratios = sorted(a / b for a, b in zip(plain.rates, one.rates, strict=True))
    notes = [
        "",
        f"Plain server with the plain client vs 1-master cluster with the cluster client, "
        f"{len(ratios)} alternated windows each: steps per second "
        f"{median(ratios):.2f}x (windows {ratios[0]:.2f}x to {ratios[-1]:.2f}x), "
        f"Redis CPU per step "
        f"{plain.total_us / one.total_us:.2f}x, worker CPU per step "
        f"{(plain.worker_cpu_s / plain.steps) / (one.worker_cpu_s / one.steps):.2f}x.",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
    ]
    return "\n".join(lines + notes)


def meta(argv: Sequence[str], seconds: float, load: str, results: list[Result]) -> dict[str, str]:
    return {
        "command": shlex.join(["python", "-m", "scripts.bench.cluster_scale", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": f"{seconds / 60:.1f} min",
        "load before the run": load,
        "workload": f"{len(results[0].rates)} windows per deployment of "
                    f"{results[0].steps // len(results[0].rates)} steps (signals and "
                    f"activities) on {sum(results[0].workflows)} workflows of ~"
                    f"{results[0].events} events at the first window",
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redurable-cluster-scale-") as tmp:
        results = run_async(run(args, args.dir or Path(tmp)))
    body = render(results, meta(argv, time.monotonic() - t0, load, results))
    print(body)
    OUT.mkdir(exist_ok=True)
    (OUT / "cluster_scale.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    if args.write_docs:
        text = DOCS.read_text()
        block = f"{BEGIN}\n{body}\n{END}"
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n## Cluster scale\n\n" + block + "\n"
        DOCS.write_text(text)
        log(f"wrote the Cluster scale table of {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
