"""The fleet benchmark's driver: a set of `Fleet` workflows (scripts/bench/workload.py)
grown to a history length, the steps it asks of them (signals, activity bursts), and
the counter snapshots around each measuring window. Workers are `scripts.bench.worker`
processes (util.WorkerProcess); the steps are observed through a shared memory file
that workflow code writes (workload.report_progress), so observing costs neither Redis
nor the workers anything measurable."""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from scripts.bench import counters
from scripts.bench.fleet_report import Snapshot, summed
from scripts.bench.peers.common import cpu_seconds
from scripts.bench.util import WorkerProcess, redis_cpu_s
from scripts.bench.worker import TASK_QUEUE
from scripts.bench.workload import SLOT, Fleet
from sdk import Client, WorkflowHandle

#: How long one workflow may take for one step before the run is declared broken.
STEP_TIMEOUT = 300.0
#: Pause between two looks at the slot file (the stamps come from the workers, so this
#: delays the next signal, never the latency reading).
POLL = 0.0005


class Slots:
    """The driver's side of report_progress: a file of one (steps, ns) slot per
    workflow, in /dev/shm where there is one, polled for the steps it waits for."""

    def __init__(self, count: int) -> None:
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(prefix="redurable-fleet-", dir=directory)
        try:
            os.ftruncate(fd, SLOT.size * count)
            self._mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        self._view = memoryview(self._mm).cast("q")
        self._waiters: dict[int, tuple[int, asyncio.Future[int]]] = {}
        self._poller: asyncio.Task[None] | None = None

    def steps(self, index: int) -> int:
        return int(self._view[2 * index])

    def stamp(self, index: int) -> int:
        return int(self._view[2 * index + 1])

    async def reached(self, index: int, steps: int) -> int:
        """When workflow `index` reported its `steps`th step (CLOCK_MONOTONIC ns)."""
        if self.steps(index) < steps:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiters[index] = (steps, future)
            if self._poller is None or self._poller.done():
                self._poller = asyncio.create_task(self._poll())
            try:
                await asyncio.wait_for(future, STEP_TIMEOUT)
            except TimeoutError:
                self._waiters.pop(index, None)
                raise TimeoutError(
                    f"workflow {index} did not reach step {steps} within {STEP_TIMEOUT:g}"
                    f" s (at {self.steps(index)}; worker logs: .bench-out/logs/)"
                ) from None
        return self.stamp(index)

    async def _poll(self) -> None:
        view = self._view
        while self._waiters:
            await asyncio.sleep(POLL)
            for index, (steps, future) in list(self._waiters.items()):
                if view[2 * index] >= steps:
                    del self._waiters[index]
                    if not future.done():
                        future.set_result(0)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        self._view.release()
        self._mm.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def pad_for(events: int) -> int:
    """Activities that grow a Fleet history to about `events` events: two events each
    (scheduled, completed), plus the start and a few workflow task completions."""
    return max(0, round((events - 7) / 2))


@dataclass
class FleetSet:
    """`n` Fleet workflows in namespace `prefix`, grown to about `target` events."""

    url: str
    target: int
    n: int
    prefix: str = field(default_factory=lambda: f"fleet{uuid.uuid4().hex[:6]}")
    #: The namespace's shard count (None: the default), fixed at its first use.
    shards: int | None = None
    slots: Slots = field(init=False)
    client: Client = field(init=False)
    handles: list[WorkflowHandle] = field(init=False, default_factory=list)
    #: Steps each workflow has been asked for so far (its "ready" step included).
    asked: list[int] = field(init=False, default_factory=list)
    _committing: dict[int, asyncio.Future[None]] = field(init=False, default_factory=dict)
    _commit_poller: asyncio.Task[None] | None = field(init=False, default=None)
    _closed: bool = field(init=False, default=False)
    #: How many of the workflows (the first ones) the steps drive: all by default;
    #: fewer to hold each worker's load constant as the fleet grows (--per-worker).
    active: int = field(init=False, default=0)

    @property
    def driven(self) -> int:
        return min(self.active, self.n) if self.active else self.n

    async def open(self) -> FleetSet:
        counters.install()
        self.slots = Slots(self.n)
        self.client = await Client.connect(self.url, prefix=self.prefix, shards=self.shards,
                                           max_connections=400)
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.client.close()
        self.slots.close()
        with redis.Redis.from_url(self.url) as r:
            for key in r.scan_iter(f"{self.prefix}:*", count=1000):
                r.unlink(key)

    async def grow(self) -> None:
        """Start the workflows; each grows its history, then reports its first step."""
        pad = pad_for(self.target)
        sem = asyncio.Semaphore(64)

        async def start(i: int) -> WorkflowHandle:
            async with sem:
                return await self.client.start_workflow(
                    Fleet.run, self.slots.path, i, pad, id=f"fleet-{i}", task_queue=TASK_QUEUE
                )

        self.handles = list(await asyncio.gather(*(start(i) for i in range(self.n))))
        self.asked = [1] * self.n

        async def ready(i: int) -> None:
            await self.slots.reached(i, 1)
            await self.committed(i)

        await asyncio.gather(*(ready(i) for i in range(self.n)))

    async def committed(self, index: int) -> None:
        """Until workflow `index` has no workflow task due or running: the task whose
        activation reported the step is committed. Workflow code reports a step before
        its task commits; a signal sent before the commit would land in that task's
        buffer and count the next step twice, once as a retried task."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._committing[index] = future
        if self._commit_poller is None or self._commit_poller.done():
            self._commit_poller = asyncio.create_task(self._poll_commits())
        await asyncio.wait_for(future, STEP_TIMEOUT)

    async def _poll_commits(self) -> None:
        """One pipeline of HGETs for all waiting workflows every POLL: a few us of
        server CPU per step, inside the measured Redis CPU."""
        keys = self.client.keys
        while self._committing:
            await asyncio.sleep(POLL)
            waiting = list(self._committing)
            pipe = self.client.redis.pipeline(transaction=False)
            for index in waiting:
                pipe.hget(keys.workflow(self.handles[index].id), "wft")
            for index, wft in zip(waiting, await pipe.execute(), strict=True):
                if wft == b"none":
                    future = self._committing.pop(index)
                    if not future.done():
                        future.set_result(None)

    async def mean_events(self, *, everyone: bool = False) -> int:
        """Mean history length of the driven workflows (`everyone`: of all)."""
        pipe = self.client.redis.pipeline(transaction=False)
        for h in self.handles if everyone else self.handles[: self.driven]:
            pipe.hget(self.client.keys.workflow(h.id), "next_event_id")
        values = [int(v or 1) - 1 for v in await pipe.execute()]
        return round(sum(values) / len(values))

    async def ping_rounds(
        self, rounds: int, latencies_ms: list[float] | None = None, inflight: int = 0
    ) -> int:
        """Each workflow gets `rounds` signals, the next one only after its code saw the
        last and its task committed; all workflows at once, or at most `inflight`
        steps at a time. Returns the steps (signals) done."""
        sem = asyncio.Semaphore(inflight or self.driven)

        async def one(i: int) -> None:
            for _ in range(rounds):
                async with sem:
                    self.asked[i] += 1
                    sent = time.monotonic_ns()
                    await self.handles[i].signal(Fleet.ping)
                    seen = await self.slots.reached(i, self.asked[i])
                    if latencies_ms is not None:
                        latencies_ms.append((seen - sent) / 1e6)
                    await self.committed(i)

        await asyncio.gather(*(one(i) for i in range(self.driven)))
        return rounds * self.driven

    async def ping_one_at_a_time(self, count: int, latencies_ms: list[float]) -> None:
        """`count` signals, one at a time, to workflow 0, 1, 2, ...: signal -> observed
        with nothing else running (the rounds above measure it behind a queue)."""
        for j in range(count):
            i = j % self.driven
            self.asked[i] += 1
            sent = time.monotonic_ns()
            await self.handles[i].signal(Fleet.ping)
            seen = await self.slots.reached(i, self.asked[i])
            latencies_ms.append((seen - sent) / 1e6)
            await self.committed(i)

    async def activity_burst(self, activities: int) -> int:
        """Each workflow runs `activities` activities in a row (one `go` signal starts
        them). Returns the steps (activities) done."""

        keys, driven = self.client.keys, self.handles[: self.driven]

        async def next_event_ids() -> list[int]:
            pipe = self.client.redis.pipeline(transaction=False)
            for h in driven:
                pipe.hget(keys.workflow(h.id), "next_event_id")
            return [int(v or 1) for v in await pipe.execute()]

        async def one(i: int) -> None:
            self.asked[i] += activities
            await self.handles[i].signal(Fleet.go, activities)
            await self.slots.reached(i, self.asked[i])
            await self.committed(i)

        before = await next_event_ids()
        await asyncio.gather(*(one(i) for i in range(self.driven)))
        # The code reports a step before its write lands, and a one-write activity step
        # (docs/design-notes.md) queues no workflow task for `committed` to see: wait for
        # every write of the burst (the go signal: 3 events, each activity 3, the last 2).
        want = [b + 3 * activities + 2 for b in before]
        async def all_written() -> None:
            while any(n < w for n, w in zip(await next_event_ids(), want, strict=True)):
                await asyncio.sleep(POLL)

        await asyncio.wait_for(all_written(), STEP_TIMEOUT)
        return activities * self.driven


def snapshot(workers: Sequence[WorkerProcess], r: redis.Redis) -> Snapshot:
    """The workers' counters (each asked by SIGUSR1), their /proc CPU, the server's."""
    counts = [w.counters() for w in workers]
    return Snapshot(
        worker_cpu_s=sum(c.get("cpu_ns", 0) for c in counts) / 1e9,
        proc_cpu_s=sum(cpu_seconds(w.pid) for w in workers),
        redis_cpu_s=redis_cpu_s(r),
        counts=summed({k: v for k, v in c.items() if k != "cpu_ns"} for c in counts),
        at=time.monotonic(),
    )


def start_workers(url: str, prefix: str, count: int, max_cached: int) -> list[WorkerProcess]:
    """`count` worker processes, all started before any is waited for."""
    extra = ["--max-cached", str(max_cached)]
    workers = [WorkerProcess(url, prefix, extra=extra) for _ in range(count)]
    try:
        for w in workers:
            w.wait_ready(timeout=120)
    except BaseException:
        for w in workers:
            w.kill()
        raise
    return workers


def stop_workers(workers: Sequence[WorkerProcess]) -> None:
    """SIGTERM to all first, then collect each (a graceful drain each)."""
    for w in workers:
        w.terminate()
    for w in workers:
        w.stop(timeout=60)
