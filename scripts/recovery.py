"""Measure how long workflows stall when the worker running them is killed with SIGKILL.

    python -m scripts.recovery                      # embedded Valkey, liveness 5 s and 1 s
    python -m scripts.recovery --redis-url redis://127.0.0.1:6379 --kills 30
    python -m scripts.recovery --liveness 1 --workflows 40 --delay 0.02

Run from the repository root. For each liveness timeout it starts `--workflows` Looper
workflows (tests/integration/chaos_workflows.py: short activities one after another,
for ever) and two worker processes (tests/integration/worker_proc.py), then `--kills`
times: picks one of the two at random, SIGKILLs it, reads the server clock once it is
dead, and starts a replacement. The workflows in flight on the killed worker are those
with a task in its pending entries list (an activity or workflow task it had taken and
not finished). For each of them, the recovery time is from the kill to the first
history event written after it, i.e. its next step, which only a live worker that
claimed the dead one's task can make. Event times are the history stream ids (server
clock, ms), so polling adds no error.

It prints, per liveness timeout, the number of kills and samples and the median, p99
and worst recovery time. A SIGKILLed worker's presence subscription vanishes with its
connections, so the others see it dead within 100-300 ms whatever the liveness timeout
(sdk/worker/presence.py) and recovery is that plus the step itself; the liveness timeout
matters only for a worker that hangs with its connections open (docs/recovery.md).

Measured on a 2-core VM, embedded Valkey, 20 workflows, 50 ms activities, 20 kills:
liveness 5 s (the default): median 0.31 s, p99 0.40 s, worst 0.40 s (215 samples).
Before presence detection: median 5.16 s, p99 6.07 s (liveness 5 s).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine.keys import GROUP
from scripts.chaos.common import percentile
from sdk import Client
from sdk._devserver import EmbeddedServer
from tests.integration.chaos_workflows import Looper
from tests.integration.worker_proc import WorkerProcess

MODULE = "tests.integration.chaos_workflows"
TASK_QUEUE = "recovery"


@dataclass
class Result:
    liveness: float
    kills: int = 0
    #: Recovery time (ms) of every workflow that was in flight on a killed worker.
    samples: list[int] = field(default_factory=list)
    #: Kills that left nothing in flight (the victim held no task at that instant).
    empty_kills: int = 0
    #: Samples of workflows the victim owned (sticky) but held no task of.
    owned: int = 0

    def percentile(self, q: float) -> int:
        return percentile(self.samples, q)

    def line(self) -> str:
        if not self.samples:
            return f"liveness {self.liveness:g} s: {self.kills} kills, no samples"
        return (
            f"liveness {self.liveness:g} s: {self.kills} kills, {len(self.samples)} "
            f"workflows in flight on the killed worker ({self.owned} owned only); recovery median "
            f"{statistics.median(self.samples) / 1000:.2f} s, p99 "
            f"{self.percentile(0.99) / 1000:.2f} s, worst {max(self.samples) / 1000:.2f} s"
        )


async def server_ms(client: Client) -> int:
    seconds, micros = await client.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def in_flight_on(client: Client, consumer: str, task_queue: str = TASK_QUEUE) -> set[str]:
    """Workflow ids of the tasks a killed worker held: pending on it, or waiting on its
    sticky streams (docs/design-notes.md "Sticky workflows"), counting only tasks that
    still have work to do (a running workflow's current workflow task, or an activity
    of a running workflow): a stale copy it held (a task another worker already ran,
    fenced when read) stalls nothing."""
    keys = client.keys
    streams = [keys.workflow_tasks(s, task_queue) for s in range(keys.shards)]
    streams += [keys.activity_tasks(s, task_queue) for s in range(keys.shards)]
    pipe = client.redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xpending_range(stream, GROUP, "-", "+", 1000, consumername=consumer)
    pending: list[list[dict[str, Any]]] = await pipe.execute()
    pipe = client.redis.pipeline(transaction=False)
    for stream, rows in zip(streams, pending, strict=True):
        for row in rows:
            pipe.xrange(stream, row["message_id"], row["message_id"])
    info: Any = await client.redis.hget(keys.worker_info(task_queue), consumer)
    sticky = json.loads(info).get("sticky") if info else None
    if sticky:  # all of it is due to the victim, delivered or not
        for shard in range(keys.shards):
            pipe.xrange(keys.sticky_tasks(shard, task_queue, sticky))
    tasks: list[dict[bytes, bytes]] = [
        fields for entries in await pipe.execute() for _, fields in entries
    ]  # an entry deleted already is not there
    pipe = client.redis.pipeline(transaction=False)
    for fields in tasks:
        pipe.hmget(keys.workflow(fields[b"workflow_id"].decode()), "status", "wft_epoch", "wft")
    ids: set[str] = set()
    for fields, (status, epoch, wft) in zip(tasks, await pipe.execute(), strict=True):
        if status != b"RUNNING":
            continue
        if b"epoch" in fields and (fields[b"epoch"] != epoch or wft == b"none"):
            continue  # a workflow task that is not the current one, or ran already
        ids.add(fields[b"workflow_id"].decode())
    return ids


async def owned_by(client: Client, workflow_ids: list[str], consumer: str,
                   task_queue: str = TASK_QUEUE) -> set[str]:
    """Workflow ids whose sticky owner (docs/design-notes.md "Sticky workflows") is the
    worker `consumer`: their next workflow task goes to its stream, so they stall with
    it too, whether or not it held one of their tasks."""
    info: Any = await client.redis.hget(client.keys.worker_info(task_queue), consumer)
    sticky = json.loads(info).get("sticky") if info else None
    if not sticky:
        return set()
    pipe = client.redis.pipeline(transaction=False)
    for wf_id in workflow_ids:
        pipe.hget(client.keys.workflow(wf_id), "sticky")
    owners: list[Any] = await pipe.execute()
    return {wf_id for wf_id, owner in zip(workflow_ids, owners, strict=True)
            if owner is not None and owner.decode() == sticky}


async def first_event_after(
    client: Client, workflow_id: str, after_ms: int, *, task_only: bool = False
) -> int | None:
    """Time (ms) of the workflow's first history event written after `after_ms` (with
    `task_only`, its first WorkflowTaskCompleted)."""
    rows: Any = await client.redis.xrange(
        client.keys.history(workflow_id), f"{after_ms + 1}-0", "+", count=None if task_only else 1
    )
    for sid, fields in rows:
        if not task_only or fields.get(b"type") == b"WorkflowTaskCompleted":
            return int(sid.split(b"-")[0])
    return None


async def measure(url: str, liveness: float, args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    prefix = f"recovery{uuid.uuid4().hex[:8]}"
    client = await Client.connect(url, prefix=prefix)
    result = Result(liveness)
    with ExitStack() as procs:

        def spawn() -> WorkerProcess:
            proc = WorkerProcess(url, prefix, TASK_QUEUE, MODULE, liveness=liveness).start()
            procs.callback(proc.kill)
            return proc

        try:
            live = [spawn(), spawn()]
            for proc in live:
                await anyio.to_thread.run_sync(proc.wait_ready)
            workflow_ids = [f"loop-{i}" for i in range(args.workflows)]
            for i in range(args.workflows):
                await client.start_workflow(
                    Looper.run, args.delay, 50, id=f"loop-{i}", task_queue=TASK_QUEUE
                )
            await anyio.sleep(1.0)
            while result.kills < args.kills:
                # Kill at a random phase of the workers' touch and claim rounds.
                await anyio.sleep(rng.uniform(0.3, 1.0))
                index = rng.randrange(len(live))
                victim = live[index]
                owned = await owned_by(client, workflow_ids, victim.identity)
                victim.kill()  # returns once it is dead (reaped)
                # The clock after death: events after it are not the victim's last ones.
                killed_at = await server_ms(client)
                result.kills += 1
                live[index] = spawn()
                waiting = await in_flight_on(client, victim.identity)
                # Owned: stalled until the others release the victim's sticky streams;
                # their step is their next workflow task (the first event after the kill
                # may be an activity result another worker wrote).
                owned -= waiting
                result.owned += len(owned)
                first = len(result.samples)
                if not waiting:
                    result.empty_kills += 1
                deadline = time.monotonic() + 3 * liveness + 30
                waiting |= owned
                while waiting and time.monotonic() < deadline:
                    for wf_id in sorted(waiting):
                        at = await first_event_after(client, wf_id, killed_at,
                                                     task_only=wf_id in owned)
                        if at is not None:
                            result.samples.append(at - killed_at)
                            waiting.discard(wf_id)
                    await anyio.sleep(0.02)
                if waiting:
                    print(f"  kill {result.kills}: {sorted(waiting)} made no progress")
                    result.samples.extend([int((3 * liveness + 30) * 1000)] * len(waiting))
                await anyio.to_thread.run_sync(live[index].wait_ready)
                if args.verbose:
                    mine = result.samples[first:]
                    print(
                        f"  kill {result.kills}: {len(mine)} in flight, recovered in "
                        f"{min(mine, default=0)}..{max(mine, default=0)} ms"
                    )
        finally:
            with anyio.CancelScope(shield=True):
                procs.close()
                async for key in client.redis.scan_iter(match=f"{prefix}:*", count=1000):
                    await client.redis.delete(key)
                await client.close()
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Recovery time after kill -9 of a worker (see the module docstring)."
    )
    p.add_argument("--redis-url", help="a server to use (default: an embedded Valkey)")
    p.add_argument(
        "--liveness",
        type=float,
        action="append",
        help="liveness timeout in s; repeatable (default: 5, the Worker default, and 1)",
    )
    p.add_argument("--kills", type=int, default=20, help="kills per liveness timeout")
    p.add_argument("--workflows", type=int, default=20, help="workflows running")
    p.add_argument("--delay", type=float, default=0.05, help="activity duration (s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> list[Result]:
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedServer()).url
        results = []
        for liveness in args.liveness or [5.0, 1.0]:
            print(f"liveness {liveness:g} s: {args.kills} kills ...", flush=True)
            results.append(await measure(url, liveness, args))
            print(results[-1].line(), flush=True)
        return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results = anyio.run(run, args, backend="asyncio")
    print()
    for result in results:
        print(result.line())
    sys.exit(0 if all(r.samples for r in results) else 1)


if __name__ == "__main__":
    main()
