"""The runner's entries (`python -m scripts.chaos run ...`) for the topology faults:
clients through a server restart (and, with Sentinel, a failover)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from scripts.chaos import client_outage, sentinel_failover
from scripts.chaos.common import sized

Outcome = tuple[bool, str]
Runner = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Outcome]]


async def _client_outage(args: argparse.Namespace, workdir: Path) -> Outcome:
    # --workflows sizes the number of restarts: the calls are as many as fit between.
    cfg = sized(client_outage.OutageConfig(), args.workflows, "restarts")
    report = await client_outage.run(cfg, workdir)
    return report.ok, (
        f"private redis-server (AOF, fsync always) SIGKILLed and restarted, clients "
        f"starting and signalling workflows throughout: {report.line()}")


async def _sentinel_failover(args: argparse.Namespace, workdir: Path) -> Outcome:
    # --workflows sizes the number of kills per durability mode.
    cfg = sized(sentinel_failover.FailoverConfig(), args.workflows, "rounds")
    report = await sentinel_failover.run(cfg, workdir)
    return report.ok, (
        "primary, 2 replicas, 3 Sentinels (quorum 2), private redis-servers; the primary "
        f"SIGKILLed under load and a replica promoted: {report.line()}")


RUNNERS: dict[str, Runner] = {
    "client-outage": _client_outage,
    "sentinel-failover": _sentinel_failover,
}
