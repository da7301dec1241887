"""Family storm (issue 13): `--parents` FamilyParent workflows (scripts/chaos/
family_workflows.py) each signal a Mailbox workflow (an external one) `mails` times and
start `--children` children (ids hashed to other shards: the cross-shard hand-off) that
each run 3 activities. Parents and children get updates (each its own id) and signals
from the client; `terminated` of the parents are terminated while their children run
(ParentClosePolicy.TERMINATE), as an update to each of those children races the
termination (it completes, or its caller is told the workflow closed first).
Meanwhile a random worker process of `--workers` is SIGKILLed every `kill_every`
seconds and replaced (at least `--kills` times).

The check (scripts/chaos/family_check.py): every workflow ends as it must with the right
result (the shared checker, plus terminated histories); each update applied exactly once
(one accepted and one completed event per id) and its caller got its result; no child
left running under a closed parent; the Mailbox's record equals the signals the parents'
histories say they sent.

    python -m scripts.chaos.family_storm [--redis-url URL] [--parents 5] [--children 20]
        [--terminated 2] [--workers 3] [--kills 6] [--kill-every 0.5] [--seed 1]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from scripts.chaos import family_check, ledger
from scripts.chaos.common import (
    WorkerPool,
    drop_client,
    open_count,
    run_on_server,
    scenario_parser,
    unique_prefix,
    wait_closed,
)
from scripts.chaos.family_workflows import FamilyChild, FamilyParent, Mailbox, child_value
from sdk import Client, WorkflowHandle, WorkflowNotRunningError, WorkflowUpdateFailedError

MODULE = "scripts.chaos.family_workflows"
TASK_QUEUE = "family"
MAILBOX = "family-mailbox"


@dataclass(frozen=True)
class FamilyConfig:
    parents: int = 5
    children: int = 20
    #: Parents terminated once all their children run (the last ones).
    terminated: int = 2
    #: Signals each parent sends the Mailbox.
    mails: int = 3
    parent_updates: int = 3
    parent_signals: int = 3
    child_updates: int = 1
    child_signals: int = 1
    workers: int = 3
    kill_every: float = 0.5
    min_kills: int = 6
    #: Each activity's duration (s).
    delay: float = 0.2
    liveness: float = 1.0
    seed: int = 1
    #: The whole run (families, kills, drain) must end within this (s).
    finish: float = 300.0


@dataclass
class FamilyReport:
    cfg: FamilyConfig
    kills: int = 0
    seconds: float = 0.0
    figures: family_check.Figures = field(default_factory=family_check.Figures)

    @property
    def ok(self) -> bool:
        return self.figures.ok

    def line(self) -> str:
        return (f"family storm: {self.cfg.parents} parents x {self.cfg.children} children "
                f"({self.cfg.terminated} parents terminated), {self.cfg.workers} workers, "
                f"{self.kills} worker kills in {self.seconds:.0f} s; {self.figures.line()}")


def doomed(cfg: FamilyConfig, p: int) -> bool:
    return p >= cfg.parents - cfg.terminated


def parent_id(p: int) -> str:
    return f"family-{p}"


def child_id(p: int, i: int) -> str:
    return f"{parent_id(p)}-c{i}"


class _Traffic:
    """The client's side of one run: sends updates and signals, keeps what came back."""

    def __init__(self, client: Client, cfg: FamilyConfig) -> None:
        self.client, self.cfg = client, cfg
        #: (workflow id, update id) -> the result its caller got.
        self.results: dict[tuple[str, str], object] = {}
        #: workflow id -> the update ids sent to it.
        self.sent_updates: dict[str, list[str]] = {}
        #: (workflow id, update id) -> the error of an update that lost its race with
        #: the parent close policy (sent to a doomed family's child as it is terminated).
        self.raced: dict[tuple[str, str], str] = {}
        self.signals = 0

    async def updates_and_signals(self, wf_id: str, updates: int, signals: int) -> None:
        handle: WorkflowHandle = self.client.get_workflow_handle(wf_id)
        self.sent_updates[wf_id] = [f"{wf_id}-u{n}" for n in range(updates)]

        async def one(n: int) -> None:
            update_id = f"{wf_id}-u{n}"
            self.results[(wf_id, update_id)] = await handle.execute_update(
                FamilyChild.add, n, id=update_id)

        async with anyio.create_task_group() as tg:
            for n in range(updates):
                tg.start_soon(one, n)
            for n in range(signals):
                await handle.signal(FamilyChild.poke, n)
                self.signals += 1

    async def racing_update(self, wf_id: str, n: int) -> None:
        """One update to a child about to be terminated: it completes, or its caller is
        told that the workflow closed first; it must not hang or apply twice."""
        update_id = f"{wf_id}-u{n}"
        self.sent_updates[wf_id] = [update_id]
        handle: WorkflowHandle = self.client.get_workflow_handle(wf_id)
        try:
            self.results[(wf_id, update_id)] = await handle.execute_update(
                FamilyChild.add, n, id=update_id)
        except (WorkflowUpdateFailedError, WorkflowNotRunningError) as exc:
            self.raced[(wf_id, update_id)] = type(exc).__name__

    async def wait_running(self, ids: list[str]) -> None:
        """Until every one of `ids` exists and runs (children are started by the parent)."""
        keys = self.client.keys
        while True:
            pipe = self.client.redis.pipeline(transaction=False)
            for wf_id in ids:
                pipe.hget(keys.workflow(wf_id), "status")
            if all(s == b"RUNNING" for s in await pipe.execute()):
                return
            await anyio.sleep(0.1)

    async def family(self, p: int) -> None:
        cfg = self.cfg
        children = [child_id(p, i) for i in range(cfg.children)]
        await self.updates_and_signals(parent_id(p), cfg.parent_updates, cfg.parent_signals)
        await self.wait_running(children)
        if doomed(cfg, p):
            async with anyio.create_task_group() as tg:
                for i, wf_id in enumerate(children):
                    tg.start_soon(self.racing_update, wf_id, i)
                await anyio.sleep(0.05)
                await self.client.get_workflow_handle(parent_id(p)).terminate("family storm")
            return
        async with anyio.create_task_group() as tg:
            for wf_id in children:
                tg.start_soon(self.updates_and_signals, wf_id, cfg.child_updates,
                              cfg.child_signals)


def expected_results(cfg: FamilyConfig) -> tuple[dict[str, object], list[str], list[str]]:
    """Results of the workflows that must complete; ids that must end terminated (the
    doomed parents); ids terminated by the parent close policy (their children)."""
    results: dict[str, object] = {}
    terminated: list[str] = []
    by_policy: list[str] = []
    for p in range(cfg.parents):
        kids = [child_id(p, i) for i in range(cfg.children)]
        if doomed(cfg, p):
            terminated.append(parent_id(p))
            by_policy += kids
            continue
        results[parent_id(p)] = [sum(child_value(i) for i in range(cfg.children)),
                                 list(range(cfg.parent_updates)),
                                 list(range(cfg.parent_signals))]
        for i, wf_id in enumerate(kids):
            results[wf_id] = [child_value(i), list(range(cfg.child_updates)),
                              list(range(cfg.child_signals))]
    return results, terminated, by_policy


async def _start_parent(client: Client, cfg: FamilyConfig, p: int) -> None:
    # A doomed family's children wait for a signal that never comes: they still run
    # when their parent is terminated, and only the close policy ends them.
    child_updates, child_signals = ((0, cfg.child_signals + 1) if doomed(cfg, p)
                                    else (cfg.child_updates, cfg.child_signals))
    await client.start_workflow(
        FamilyParent.run,
        args=[cfg.children, cfg.delay, MAILBOX, cfg.mails, cfg.parent_updates,
              cfg.parent_signals, child_updates, child_signals],
        id=parent_id(p), task_queue=TASK_QUEUE)


async def run(url: str, cfg: FamilyConfig, workdir: Path) -> FamilyReport:
    report = FamilyReport(cfg)
    rng = random.Random(cfg.seed)
    prefix = unique_prefix("family")
    db = ledger.create(workdir / f"{prefix}.sqlite")
    client = await Client.connect(url, prefix=prefix)
    traffic = _Traffic(client, cfg)
    results, terminated, by_policy = expected_results(cfg)
    every_id = [*results, *terminated, *by_policy]
    began = time.monotonic()
    with (workdir / f"{prefix}.log").open("ab") as log:
        pool = WorkerPool(url, prefix, ledger_path=db, liveness=cfg.liveness, log=log,
                          module=MODULE, task_queue=TASK_QUEUE)
        try:
            await pool.start(cfg.workers)
            mailbox = await client.start_workflow(Mailbox.run, id=MAILBOX,
                                                  task_queue=TASK_QUEUE)
            families_done = anyio.Event()

            async def families() -> None:
                async with anyio.create_task_group() as tg:
                    for p in range(cfg.parents):
                        await _start_parent(client, cfg, p)
                        tg.start_soon(traffic.family, p)
                families_done.set()

            async def kills() -> None:
                while not (families_done.is_set() and pool.kills >= cfg.min_kills
                           and not await open_count(client, every_id)):
                    await anyio.sleep(cfg.kill_every)
                    ready = await pool.ready(client)
                    if ready:
                        pool.kill(rng.choice(ready))

            with anyio.fail_after(cfg.finish):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(kills)
                    await families()
                await wait_closed(client, every_id, cfg.finish)
                await mailbox.signal(Mailbox.finish)
                got = await mailbox.result()
            report.kills = pool.kills
            report.seconds = time.monotonic() - began
            pool.close()
            report.figures = await family_check.check(
                client, db, results=results, terminated=terminated, by_policy=by_policy,
                mailbox=MAILBOX, mailbox_got=got, parents=[parent_id(p) for p in
                                                           range(cfg.parents)],
                mails=cfg.mails, sent_updates=traffic.sent_updates,
                update_results=traffic.results, raced=traffic.raced,
                signals_sent=traffic.signals)
            return report
        finally:
            pool.close()
            await drop_client(client, prefix)


def main(argv: list[str] | None = None) -> None:
    p = scenario_parser(__doc__)
    p.add_argument("--parents", type=int, default=FamilyConfig.parents)
    p.add_argument("--children", type=int, default=FamilyConfig.children)
    p.add_argument("--workers", type=int, default=FamilyConfig.workers)
    p.add_argument("--terminated", type=int, default=FamilyConfig.terminated)
    p.add_argument("--kills", type=int, default=FamilyConfig.min_kills)
    p.add_argument("--kill-every", type=float, default=FamilyConfig.kill_every)
    p.add_argument("--seed", type=int, default=FamilyConfig.seed)
    args = p.parse_args(argv)
    cfg = FamilyConfig(parents=args.parents, children=args.children,
                       terminated=args.terminated, workers=args.workers,
                       min_kills=args.kills, kill_every=args.kill_every, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        report = run_on_server(args.redis_url, lambda url: run(url, cfg, Path(tmp)))
    print(report.line())
    if not report.ok:
        print(report.figures.details())
        sys.exit(1)


if __name__ == "__main__":
    main()
