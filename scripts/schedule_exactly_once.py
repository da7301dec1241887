"""Check that a schedule fires each of its times exactly once while workers die.

    python -m scripts.schedule_exactly_once                      # embedded Valkey
    python -m scripts.schedule_exactly_once --redis-url redis://127.0.0.1:6379 \
        --seconds 60 --workers 2 --kill-at 30

Run from the repository root. It starts `--workers` worker processes
(tests/integration/worker_proc.py with tests/integration/schedule_workflows.py), creates
a schedule that fires every second for `--seconds` seconds (start_at/end_at, overlap
ALLOW_ALL so every fire starts a workflow), SIGKILLs one worker `--kill-at` seconds into
it (its fire in progress, if any, is left pending for the others: engine/schedules.py),
waits until the schedule has no next time and no pending start, then prints:

- fires expected: the times in [start_at, end_at];
- workflows started: distinct workflow ids the schedule's fires started (from the
  namespace's workflow index);
- duplicates: fires recorded by the schedule beyond the distinct workflows, plus
  workflows whose history holds more than one WorkflowExecutionStarted;
- missed: expected times with no workflow; unexpected: workflows for no expected time;
- completed: of the started workflows, how many completed.

Exit status 0 when started == expected and duplicates == missed == 0.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import timedelta

import anyio

from engine.schedule_policy import workflow_id_of
from engine.schedule_spec import from_ms
from engine.schedules import ScheduleStore
from sdk import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    WorkflowExecutionStatus,
)
from sdk._devserver import EmbeddedServer
from tests.integration.schedule_workflows import Tick
from tests.integration.worker_proc import WorkerProcess

MODULE = "tests.integration.schedule_workflows"
TASK_QUEUE = "schedule-check"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Exactly-once schedule fires with a worker killed.")
    p.add_argument("--redis-url", help="a server to use (default: an embedded Valkey)")
    p.add_argument("--seconds", type=int, default=60, help="how long the schedule fires")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--kill-at", type=float, default=30.0, help="s into the fires to kill one")
    return p.parse_args(argv)


async def check(url: str, args: argparse.Namespace) -> bool:
    prefix = "sched-check-" + uuid.uuid4().hex[:8]
    client = await Client.connect(url, prefix=prefix)
    procs = [WorkerProcess(url, prefix, TASK_QUEUE, MODULE, liveness=1.0).start()
             for _ in range(args.workers)]
    try:
        for proc in procs:
            await anyio.to_thread.run_sync(proc.wait_ready)
        store = ScheduleStore(client.store)
        start_ms = (await store.server_ms() // 1000 + 2) * 1000
        end_ms = start_ms + (args.seconds - 1) * 1000
        await client.create_schedule("every-second", Schedule(
            action=ScheduleActionStartWorkflow(Tick.run, "check", id="tick",
                                               task_queue=TASK_QUEUE),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=1))],
                              start_at=from_ms(start_ms), end_at=from_ms(end_ms)),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL)))
        print(f"namespace {prefix}: {args.seconds} fires, 1 s apart, {args.workers} workers",
              flush=True)
        await anyio.sleep((start_ms - await store.server_ms()) / 1000 + args.kill_at)
        procs[0].kill()
        print(f"killed worker {procs[0].identity} at +{args.kill_at:g} s", flush=True)
        deadline = time.monotonic() + args.seconds + 120
        while True:
            rec = await store.read("every-second")
            if rec.next_ms is None and rec.pending is None:
                break
            if time.monotonic() > deadline:
                print("gave up waiting for the schedule to finish")
                break
            await anyio.sleep(0.5)
        expected = {workflow_id_of("tick", start_ms + 1000 * i) for i in range(args.seconds)}
        started = [w async for w in client.list_workflows(type="Tick")]
        ids = {w.id for w in started}
        runs = 0
        for workflow_id in ids:
            events = await client.get_workflow_handle(workflow_id).fetch_history()
            starts = sum(1 for e in events.events if e.type == "WorkflowExecutionStarted")
            runs += max(0, starts - 1)
        # Let the last workflows finish before counting completions.
        await anyio.sleep(2)
        completed = 0
        for workflow_id in ids:
            described = await client.get_workflow_handle(workflow_id).describe()
            completed += described.status == WorkflowExecutionStatus.COMPLETED
        duplicates = (rec.actions - len(ids)) + runs
        missed = len(expected - ids)
        unexpected = len(ids - expected)
        print(f"fires expected:    {len(expected)}")
        print(f"workflows started: {len(ids)}")
        print(f"duplicates:        {duplicates}")
        print(f"missed:            {missed}")
        print(f"unexpected:        {unexpected}")
        print(f"completed:         {completed}")
        print(f"fires recorded by the schedule: {rec.actions}, skipped: {rec.skipped}, "
              f"missed (catch-up window): {rec.missed}")
        return len(ids) == len(expected) and duplicates == 0 and missed == 0
    finally:
        for proc in procs:
            proc.stop()
        async for key in client.redis.scan_iter(match=f"{prefix}:*", count=1000):
            await client.redis.delete(key)
        await client.close()


async def run(args: argparse.Namespace) -> bool:
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedServer()).url
        return await check(url, args)


def main(argv: Sequence[str] | None = None) -> None:
    ok = anyio.run(run, parse_args(argv), backend="asyncio")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
