"""Wake entries for timers that clients add (sdk/worker/timer_wakes.py): the client's
Function writes one into the shard's wake stream when the timer falls due soon, a
worker's read takes it out of its tasks, nudges the timer loop at the due time and
acknowledges it. (On a real server with a hung lease holder:
tests/integration/test_timer_wakes.py.)"""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta

import anyio
import pytest

from engine.library import library_source
from engine.timer_leases import TIMER_WAKE_WINDOW_MS, TimerWake, parse_wake
from sdk import Client
from sdk.worker.plumbing import TaskPlumbing
from sdk.worker.task_entry import TaskEntry
from sdk.worker.timer_leases import LEASE_MS, LOOKS_PER_S
from sdk.worker.timer_wakes import TimerWakes

pytestmark = pytest.mark.anyio


def test_the_lua_and_python_windows_agree_and_cover_a_lapse_and_a_look() -> None:
    match = re.search(r"local TIMER_WAKE_WINDOW_MS = (\d+)", library_source())
    assert match is not None and int(match[1]) == TIMER_WAKE_WINDOW_MS
    # A timer due later than that finds the shard held by a live worker again.
    assert TIMER_WAKE_WINDOW_MS >= LEASE_MS + 1000 / LOOKS_PER_S


async def wake_entries(client: Client, workflow_id: str) -> list[TimerWake | None]:
    stream = client.keys.timer_wake(client.keys.shard(workflow_id))
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.redis.xrange(
        stream)  # type: ignore[assignment]
    return [parse_wake(fields) for _, fields in entries]


async def test_a_start_writes_a_wake_entry_for_a_timer_due_soon_only(
    fake_client: Client,
) -> None:
    client = fake_client
    await client.start_workflow("Forever", id="soon", task_queue="q",
                                run_timeout=timedelta(milliseconds=500))
    [wake] = await wake_entries(client, "soon")
    assert wake is not None and wake.due_in_ms == 500 and wake.at_ms > 0
    # Due after the window (a hung holder has lost its lease by then), or no timer: none.
    await client.start_workflow("Forever", id="later", task_queue="q",
                                run_timeout=timedelta(milliseconds=TIMER_WAKE_WINDOW_MS + 1))
    await client.start_workflow("Forever", id="none", task_queue="q")
    lengths = [await client.redis.xlen(client.keys.timer_wake(s))
               for s in range(client.keys.shards)]
    assert sum(lengths) == 1


async def test_a_worker_read_nudges_at_the_due_time_and_acknowledges(
    fake_client: Client,
) -> None:
    client = fake_client
    plumbing = TaskPlumbing(client, "q", "worker-1", max_deliveries=5)
    await client.store.ensure_groups("q")
    wakes = TimerWakes(plumbing, lambda: None)
    nudges: list[tuple[float, float | None]] = []
    client.store.timer_listeners.append(lambda due: nudges.append((time.monotonic(), due)))
    await client.start_workflow("Forever", id="wf-1", task_queue="q",
                                run_timeout=timedelta(milliseconds=300))
    shard = client.keys.shard("wf-1")
    stream = client.keys.timer_wake(shard)
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        read_at = time.monotonic()
        entries = await plumbing.read([*plumbing.workflow_streams, *wakes.streams], 10)
        # The workflow's first task stays a task; the wake entry is taken out.
        tasks = wakes.take(entries)
        assert [t.stream for t in tasks] == [plumbing.workflow_streams[shard]]
        assert plumbing.stats["timer_wakes"] == 1
        assert nudges == []  # not before the timer falls due
        with anyio.fail_after(2):
            while not nudges:
                await anyio.sleep(0.01)
    [(heard, due)] = nudges
    assert due is not None and 0.3 <= due - read_at <= 0.35
    assert heard >= due - 0.001
    # Acknowledged and deleted.
    assert await client.redis.xlen(stream) == 0
    assert (await client.redis.xpending(stream, "workers"))["pending"] == 0


async def test_wakes_due_together_share_a_nudge_and_the_server_clock_counts(
    fake_client: Client,
) -> None:
    plumbing = TaskPlumbing(fake_client, "q", "worker-1", max_deliveries=5)
    server_now = [10_000]
    wakes = TimerWakes(plumbing, lambda: server_now[0])
    # Written at 9 800 for 500 ms later, read at 10 000 (server clock): 300 ms left.
    assert wakes.due_at(TimerWake(500, 9_800), 100.0) == pytest.approx(100.3)
    # A server clock estimate behind the entry's own time never makes it later.
    server_now[0] = 9_000
    assert wakes.due_at(TimerWake(500, 9_800), 100.0) == pytest.approx(100.5)
    nudges: list[float | None] = []
    fake_client.store.timer_listeners.append(nudges.append)
    stream = wakes.streams[0]
    now_ms = 9_000
    entries = [TaskEntry(stream, f"1-{i}", {b"due_in": str(d).encode(),
                                           b"at": str(now_ms).encode()})
               for i, d in enumerate((50, 50, 120))]
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        assert wakes.take(entries) == []
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert len(nudges) == 2 and all(d is not None and math.isfinite(d) for d in nudges)


async def test_a_worker_reads_no_wake_stream_of_a_shard_it_holds(fake_client: Client) -> None:
    plumbing = TaskPlumbing(fake_client, "q", "worker-1", max_deliveries=5)
    held: set[int] = set()
    wakes = TimerWakes(plumbing, lambda: None, lambda: held)
    assert wakes.read_streams() == wakes.streams
    held.update({0, 2})
    assert wakes.read_streams() == [wakes.streams[1], wakes.streams[3]]
    held.clear()  # its leases lost or given up: it reads them all again
    assert wakes.read_streams() == wakes.streams
    assert not fake_client.store.reads_kept  # (a cluster's store: it reads them all)
