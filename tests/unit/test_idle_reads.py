"""What an idle worker's pollers and beat cost: reads that block longer once they find
nothing (and are cut short when the worker stops), backlogs run by whoever fills them
rather than by a poller blocked in such a read, and a beat whose server time comes
with its own round trip (sdk/worker/plumbing.py, handoff.py, liveness.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from engine.keys import Keys
from sdk import Client, Worker, activity, workflow
from sdk.worker.handoff import Handoffs
from sdk.worker.plumbing import IDLE_READ_BLOCK_MS, READ_BLOCK_MS, TaskPlumbing
from sdk.worker.task_entry import TaskEntry

pytestmark = pytest.mark.anyio
QUEUE = "q"


class ReadStore:
    """Answers reads from a script (each: entries, or "block": until cancelled)."""

    def __init__(self, *answers: Any, cut_short: bool = True) -> None:
        self.answers = list(answers)
        self.reads_cut_short = cut_short
        self.keys = Keys("p", 2)
        self.blocks: list[int] = []
        self.blocked = anyio.Event()
        self.cancelled = False

    async def read_group(
        self, consumer: str, streams: Sequence[str], count: int, block_ms: int
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        self.blocks.append(block_ms)
        answer = self.answers.pop(0)
        if answer == "block":
            self.blocked.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.cancelled = True
        return list(answer)


def plumbing_on(store: ReadStore) -> TaskPlumbing:
    client = SimpleNamespace(store=store, keys=store.keys)
    return TaskPlumbing(client, QUEUE, "me", max_deliveries=3)  # type: ignore[arg-type]


ENTRY = ("other", "1-0", {b"x": b"1"})  # a stream outside the task queue's: not screened


async def test_a_read_after_one_that_found_nothing_blocks_longer() -> None:
    store = ReadStore([], [], [ENTRY], [])
    plumbing = plumbing_on(store)
    for _ in range(4):
        await plumbing.read(["s"], 8)
    assert store.blocks == [READ_BLOCK_MS, IDLE_READ_BLOCK_MS, IDLE_READ_BLOCK_MS, READ_BLOCK_MS]


async def test_each_set_of_streams_counts_its_own_reads() -> None:
    store = ReadStore([], [], [])
    plumbing = plumbing_on(store)
    await plumbing.read(["a"], 8)
    await plumbing.read(["b"], 8)
    await plumbing.read(["a"], 8)
    assert store.blocks == [READ_BLOCK_MS, READ_BLOCK_MS, IDLE_READ_BLOCK_MS]


async def test_a_store_that_cannot_cut_a_read_short_keeps_short_reads() -> None:
    store = ReadStore([], [], cut_short=False)
    plumbing = plumbing_on(store)
    await plumbing.read(["s"], 8)
    await plumbing.read(["s"], 8)
    assert store.blocks == [READ_BLOCK_MS, READ_BLOCK_MS]


async def test_a_stopping_worker_cuts_its_idle_reads_short() -> None:
    store = ReadStore([], "block")
    plumbing = plumbing_on(store)
    await plumbing.read(["s"], 8)
    got: list[list[TaskEntry]] = []

    async def read() -> None:
        got.append(await plumbing.read(["s"], 8))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await store.blocked.wait()
            plumbing.stopping = True
            plumbing.cut_idle_reads()
    assert got == [[]] and store.cancelled
    assert store.blocks == [READ_BLOCK_MS, IDLE_READ_BLOCK_MS]


def handoffs_on(store: ReadStore) -> Handoffs:
    return Handoffs(store, "me", liveness_ms=5000, max_deliveries=3,  # type: ignore[arg-type]
                    stopping=lambda: False)


def test_the_hand_off_read_blocks_longer_when_idle_until_its_next_claim() -> None:
    handoffs = handoffs_on(ReadStore())
    handoffs._last_claim = time.monotonic()  # the next claim is 5 s away
    assert 4_900 <= handoffs.block_after(0) <= min(5_000, IDLE_READ_BLOCK_MS)
    assert handoffs.block_after(1) == READ_BLOCK_MS  # it applied one: more may come
    handoffs._last_claim = time.monotonic() - 4.2  # the next claim is in under 0.8 s
    assert READ_BLOCK_MS <= handoffs.block_after(0) <= 800
    handoffs._claim_every = 60.0  # a large fleet's share: the idle block bounds it
    assert handoffs.block_after(0) == IDLE_READ_BLOCK_MS
    handoffs._last_claim = 0.0  # overdue
    assert handoffs.block_after(0) == READ_BLOCK_MS
    assert handoffs_on(ReadStore(cut_short=False)).block_after(0) == READ_BLOCK_MS


async def test_a_freed_activity_slot_runs_the_backlog_without_the_poller(
    fake_client: Client,
) -> None:
    release = anyio.Event()
    ran: list[str] = []

    @activity.defn
    async def waits() -> None:
        ran.append(activity.info().workflow_id)
        await release.wait()

    worker = Worker(fake_client, task_queue=QUEUE, activities=[waits],
                    max_concurrent_activities=1, handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1",
              b"attempt": b"1", b"activity_type": b"waits", b"input": b"\x90"}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            activities.start([TaskEntry(stream, "1-0", dict(fields))])
            activities.adopt(stream, [(b"2-0", dict(fields))])  # no slot: backlog
            assert [t.msg_id for t in activities.backlog] == ["2-0"]
            while not ran:
                await anyio.sleep(0.01)
            release.set()  # the first attempt ends: the claimed one takes its slot
            while len(ran) < 2:
                await anyio.sleep(0.01)
            assert activities.backlog == []
            tg.cancel_scope.cancel()


async def test_workflow_tasks_run_outside_the_poller_run_their_backlog_too(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A speculation that must run the normal way goes to the backlog: the eager or
    claimed batch that put it there runs it, not the poller (blocked in a read)."""

    @workflow.defn
    class Noop:
        @workflow.run
        async def run(self) -> None:
            return None

    worker = Worker(fake_client, task_queue=QUEUE, workflows=[Noop], handle_signals=False)
    tasks = worker._workflow_tasks
    stream = worker._plumbing.workflow_streams[0]
    first = TaskEntry(stream, "1-0", {b"workflow_id": b"w"})
    processed: list[list[str]] = []

    async def process(batch: list[TaskEntry]) -> None:
        processed.append([t.msg_id for t in batch])
        if batch[0] is first:
            tasks.backlog.append(TaskEntry(stream, "2-0", {b"workflow_id": b"w"}))

    monkeypatch.setattr(tasks, "_process", process)
    await tasks.run_now([first])
    assert processed == [["1-0"], ["2-0"]] and tasks.backlog == []


async def test_the_beat_takes_the_server_time_from_its_own_round_trip(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(fake_client, task_queue=QUEUE, workflows=[], activities=[idle],
                    handle_signals=False)
    liveness = worker.liveness
    redis = fake_client.redis
    times = 0
    real_time = redis.time

    async def counted_time() -> Any:
        nonlocal times
        times += 1
        return await real_time()

    monkeypatch.setattr(redis, "time", counted_time)
    await liveness.beat()
    assert times == 1  # the first beat measures before it writes
    liveness.clock.offset_ms = 10**9  # as if the clocks had drifted
    await liveness.beat()
    await liveness.beat()
    assert times == 1
    assert abs(liveness.clock.offset_ms) < 10**6  # measured again, by the beat's pipeline


@activity.defn
async def idle() -> None:
    return None


async def test_the_beat_writes_the_worker_info_once_and_again_when_forgotten(
    fake_client: Client,
) -> None:
    worker = Worker(fake_client, task_queue=QUEUE, workflows=[], activities=[idle],
                    handle_signals=False)
    liveness = worker.liveness
    redis = fake_client.redis
    info_key = fake_client.keys.worker_info(QUEUE)
    await liveness.beat()
    assert await redis.hexists(info_key, worker.identity)
    await redis.hset(info_key, worker.identity, "written by hand")
    await liveness.beat()
    assert await redis.hget(info_key, worker.identity) == b"written by hand"  # not again
    # Taken for dead and forgotten (beat and info dropped together): written again.
    await liveness.death_watch.forget(worker.identity)
    await liveness.beat()
    info: Any = await redis.hget(info_key, worker.identity)
    assert json.loads(info)["presence"] is True
    # Presence given up: the entry must say so.
    liveness.presence.supported = False
    await liveness.beat()
    info = await redis.hget(info_key, worker.identity)
    assert json.loads(info)["presence"] is False


async def test_the_fleet_shares_the_look_for_idle_entries(fake_client: Client) -> None:
    worker = Worker(fake_client, task_queue=QUEUE, workflows=[], activities=[idle],
                    handle_signals=False)
    liveness = worker.liveness
    liveness.death_watch.watched = 1  # two workers: each looks every beat
    assert liveness.idle_claim_in(1.0) == 1.0  # counted from the beat's start
    liveness.death_watch.watched = 19  # twenty: each every ten beats, on average
    waits = [liveness.idle_claim_in(1.0) for _ in range(2000)]
    assert min(waits) > 4.9 and max(waits) < 15.1
    assert sum(waits) / len(waits) == pytest.approx(10.0, rel=0.05)
