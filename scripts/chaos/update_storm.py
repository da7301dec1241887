"""Update storm (issue 13): one UpdateLog workflow (scripts/chaos/update_workflows.py)
gets `--updates` updates numbered 0..N-1, sent by `--clients` clients at once (each its
own Client, each update its own id), paced over `--duration` seconds, while the worker
process running it is SIGKILLed `--kills` times and replaced. Each update must be
applied exactly once (the workflow's list holds 0..N-1 once each; the history has one
accepted and one completed event per id) and each caller must get its own result (the
position of its number in that list).

    python -m scripts.chaos.update_storm [--redis-url URL] [--updates 1000] [--clients 10]
        [--kills 2] [--duration 10]
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import anyio

from scripts.chaos import checker
from scripts.chaos.common import drop_client, run_on_server, scenario_parser, unique_prefix
from scripts.chaos.paced_storm import (
    PacedStorm,
    PacedStormConfig,
    PacedStormReport,
    print_report,
)
from scripts.chaos.update_workflows import UpdateLog
from sdk import Client
from tests.integration.worker_proc import WorkerProcess

MODULE = "scripts.chaos.update_workflows"
TASK_QUEUE = "updates"
WORKFLOW_ID = "update-storm"


@dataclass(frozen=True)
class UpdateStormConfig(PacedStormConfig):
    updates: int = 1000
    clients: int = 10


@dataclass
class UpdateStormReport(PacedStormReport):
    cfg: UpdateStormConfig
    #: Updates sent but not answered when a kill came (summed over the kills).
    in_flight_at_kills: int = 0

    def line(self) -> str:
        return (
            f"update storm: {self.cfg.updates} updates from {self.cfg.clients} clients in "
            f"{self.send_s:.1f} s, {self.kills} worker kills ({self.in_flight_at_kills} "
            f"updates in flight at the kills); {len(self.problems)} problems; "
            f"{self.verdict.summary()}"
        )


def _problems(results: dict[int, int], applied: list[int], accepted: list[str],
              completed: list[str], n: int) -> list[str]:
    problems: list[str] = []
    if sorted(applied) != list(range(n)):
        counts = Counter(applied)
        missing = n - len(counts)
        dupes = sum(c - 1 for c in counts.values())
        problems.append(f"applied {len(applied)} updates: {missing} missing, {dupes} twice")
    if len(results) != n:
        problems.append(f"{n - len(results)} callers got no result")
    wrong = [i for i, pos in results.items()
             if not (0 < pos <= len(applied) and applied[pos - 1] == i)]
    if wrong:
        problems.append(f"{len(wrong)} callers got another update's result (e.g. {wrong[:3]})")
    for what, ids in (("accepted", accepted), ("completed", completed)):
        if sorted(ids) != sorted(f"u-{i}" for i in range(n)):
            problems.append(f"the history's {what} events are not one per update id")
    return problems


async def run(url: str, cfg: UpdateStormConfig) -> UpdateStormReport:
    report = UpdateStormReport(cfg)
    prefix = unique_prefix("updates")
    client = await Client.connect(url, prefix=prefix)
    senders = [await Client.connect(url, prefix=prefix) for _ in range(cfg.clients)]
    storm = PacedStorm(url, prefix, TASK_QUEUE, MODULE, sends=cfg.updates, cfg=cfg)
    results: dict[int, int] = {}

    async def one(sender: Client, i: int) -> None:
        handle = sender.get_workflow_handle(WORKFLOW_ID)
        results[i] = await handle.execute_update(UpdateLog.add, i, id=f"u-{i}")

    async def send() -> None:
        started = time.monotonic()
        async with anyio.create_task_group() as tg:

            async def start_one(i: int) -> None:
                tg.start_soon(one, senders[i % cfg.clients], i)

            await storm.send(start_one)
        report.send_s = time.monotonic() - started

    async def before_kill(worker: WorkerProcess) -> None:
        report.in_flight_at_kills += storm.sent - len(results)

    try:
        await storm.start_worker()
        handle = await client.start_workflow(UpdateLog.run, id=WORKFLOW_ID,
                                             task_queue=TASK_QUEUE)
        with anyio.fail_after(cfg.duration + cfg.finish):
            async with anyio.create_task_group() as tg:
                tg.start_soon(storm.kill, before_kill)
                await send()
            report.kills = storm.kills
            await handle.signal(UpdateLog.finish)
            applied: list[int] = await handle.result()
        events = [e async for e in handle.fetch_history()]
        accepted = [str(e.attributes["update_id"]) for e in events
                    if e.type == "WorkflowExecutionUpdateAccepted"]
        completed = [str(e.attributes["update_id"]) for e in events
                     if e.type == "WorkflowExecutionUpdateCompleted"]
        report.problems += _problems(results, applied, accepted, completed, cfg.updates)
        report.verdict = await checker.check(client.redis, client.keys, client.codec,
                                             {WORKFLOW_ID: applied})
    finally:
        storm.stop()
        for sender in senders:
            await sender.close()
        await drop_client(client, prefix)
    return report


def main(argv: list[str] | None = None) -> None:
    p = scenario_parser(__doc__)
    p.add_argument("--updates", type=int, default=UpdateStormConfig.updates)
    p.add_argument("--clients", type=int, default=UpdateStormConfig.clients)
    p.add_argument("--kills", type=int, default=UpdateStormConfig.kills)
    p.add_argument("--duration", type=float, default=UpdateStormConfig.duration)
    args = p.parse_args(argv)
    cfg = UpdateStormConfig(updates=args.updates, clients=args.clients, kills=args.kills,
                            duration=args.duration)
    print_report(run_on_server(args.redis_url, lambda url: run(url, cfg)))

if __name__ == "__main__":
    main()
