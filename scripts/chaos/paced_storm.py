"""What the one-workflow storms share (the signal storm, scripts/chaos/signal_storm.py,
and the update storm, scripts/chaos/update_storm.py): N sends paced evenly over a
duration at one workflow, while the worker process running it is SIGKILLed `kills`
times, at even intervals of the sends, and replaced each time."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from scripts.chaos import checker
from tests.integration.worker_proc import WorkerProcess


@dataclass(frozen=True)
class PacedStormConfig:
    kills: int = 2
    duration: float = 10.0
    """Sends are paced over this long, so they keep arriving at live workers."""
    liveness: float = 1.0
    finish: float = 120.0
    """How long the workflow may take to finish after the last send."""


@dataclass(kw_only=True)
class PacedStormReport:
    kills: int = 0
    send_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    verdict: checker.Verdict = field(default_factory=checker.Verdict)

    @property
    def ok(self) -> bool:
        return not self.problems and self.verdict.ok

    def line(self) -> str:
        raise NotImplementedError  # each storm's own


class PacedStorm:
    """The worker process of a storm (one at a time), and the two loops that run
    together: the paced sends (`send`) and the kills that follow them (`kill`)."""

    def __init__(self, url: str, prefix: str, task_queue: str, module: str, *, sends: int,
                 cfg: PacedStormConfig) -> None:
        self.url, self.prefix, self.task_queue, self.module = url, prefix, task_queue, module
        self.sends, self.cfg = sends, cfg
        #: How many sends have gone out: the kills come at even intervals of them.
        self.sent = 0
        self.kills = 0
        self.worker: WorkerProcess | None = None

    async def start_worker(self) -> None:
        self.worker = WorkerProcess(self.url, self.prefix, self.task_queue, self.module,
                                    liveness=self.cfg.liveness).start()
        await anyio.to_thread.run_sync(self.worker.wait_ready)

    async def send(self, send_one: Callable[[int], Awaitable[None]]) -> None:
        """`send_one(i)` for i in 0..sends-1, the i-th at i/sends of the duration (or
        later, when the sends before it took longer)."""
        started = time.monotonic()
        for i in range(self.sends):
            delay = started + self.cfg.duration * i / self.sends - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            await send_one(i)
            self.sent = i + 1

    async def kill(
        self, before_kill: Callable[[WorkerProcess], Awaitable[None]] | None = None
    ) -> None:
        """SIGKILL the worker `kills` times, at even intervals of the sends, each time
        after `before_kill(worker)` and starting its replacement (which claims what the
        dead one held)."""
        for k in range(self.cfg.kills):
            while self.sent < self.sends * (k + 1) // (self.cfg.kills + 1):
                await anyio.sleep(0.005)
            assert self.worker is not None
            if before_kill is not None:
                await before_kill(self.worker)
            self.worker.kill()
            self.kills += 1
            await self.start_worker()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill()


def print_report(report: PacedStormReport) -> None:
    """A storm's command line ending: its line, and its problems (exit 1) if any."""
    print(report.line())
    if not report.ok:
        print("\n".join(report.problems))
        print(report.verdict.details())
        sys.exit(1)
