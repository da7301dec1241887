"""The runner's entries (`python -m scripts.chaos run ...`) for the Redis Cluster
topology faults of issue 12: a master killed and failed over, slots migrated. Each
starts its own local cluster, on `--cluster-ports` if given (6 ports for the failover,
the first 3 for the reshard), else on free ports."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from scripts.chaos import cluster_failover, cluster_reshard
from scripts.chaos.common import sized
from scripts.cluster import parse_ports

Outcome = tuple[bool, str]
Runner = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Outcome]]


def _ports(args: argparse.Namespace, count: int) -> tuple[int, ...]:
    ports = parse_ports(args.cluster_ports) if args.cluster_ports else []
    if ports and len(ports) < count:
        raise SystemExit(f"--cluster-ports: this scenario needs {count} ports")
    return tuple(ports[:count])


async def _cluster_failover(args: argparse.Namespace, workdir: Path) -> Outcome:
    cfg = sized(cluster_failover.ClusterFailoverConfig(ports=_ports(args, 6)),
                args.workflows)
    report = await cluster_failover.run(cfg, workdir)
    return report.ok, f"local Redis 7.0 Cluster: {report.line()}"


async def _cluster_reshard(args: argparse.Namespace, workdir: Path) -> Outcome:
    cfg = sized(cluster_reshard.ClusterReshardConfig(
        ports=_ports(args, 3), mover=args.reshard), args.workflows)
    report = await cluster_reshard.run(cfg, workdir)
    how = {"whole": "each moved whole (one MIGRATE)",
           "keys": f"key by key, {cfg.batch} keys per MIGRATE",
           "redis-cli": "by `redis-cli --cluster reshard` (10 keys per MIGRATE, with "
                        "every lower slot of its master)"}[cfg.mover]
    return report.ok, (
        f"local Redis 7.0 Cluster, 3 masters; {cfg.workflows} workflows, {cfg.workers} "
        f"workers; one of the namespace's 4 shard slots migrated to the next master every "
        f"{cfg.move_every:g} s while workflows were open, {how}: {report.line()}")


RUNNERS: dict[str, Runner] = {
    "cluster-failover": _cluster_failover,
    "cluster-reshard": _cluster_reshard,
}
