"""The runner's entries (`python -m scripts.chaos run ...`) for issue 13's scenarios on
child workflows, updates and external signals: the family storm."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from scripts.chaos import family_storm
from scripts.chaos.common import server_for, sized

Outcome = tuple[bool, str]
Runner = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, Outcome]]


async def _family(args: argparse.Namespace, workdir: Path) -> Outcome:
    with ExitStack() as stack:
        url, server = server_for(args.redis_url, stack)
        # --workflows sizes the number of parents (each with its 20 children).
        cfg = sized(family_storm.FamilyConfig(), args.workflows, "parents")
        report = await family_storm.run(url, cfg, workdir)
        return report.ok, (
            f"each parent signals an external mailbox {cfg.mails} times and starts "
            f"{cfg.children} children x 3 activities; {cfg.parent_updates} updates + "
            f"{cfg.parent_signals} signals per parent, {cfg.child_updates} + "
            f"{cfg.child_signals} per child; one of {cfg.workers} workers SIGKILLed every "
            f"{cfg.kill_every * 1000:g} ms, liveness {cfg.liveness:g} s, {server}: "
            f"{report.line()}")


RUNNERS: dict[str, Runner] = {
    "family": _family,
}
