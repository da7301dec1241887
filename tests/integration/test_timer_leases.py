"""Timer scans that take turns (sdk/worker/timer_leases.py), on a real server: one
worker scans a shard on schedule at a time, and the shard's timers still fire when
that worker dies without giving its lease up."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest

from engine.calls import unwrap
from engine.timer_leases import leased_scan_call, parse_scan, plain_scan_call
from sdk import Client, Worker, WorkflowFailureError, WorkflowTimeoutError, workflow
from sdk.testing import running_worker
from sdk.worker.timer_leases import ShardLeases
from tests.integration.helpers import eventually
from tests.integration.worker_proc import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@workflow.defn
class Forever:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


def all_shards(client: Client) -> set[int]:
    return set(range(client.keys.shards))


async def test_a_held_shard_is_not_scanned_by_another_worker(real_client: Client) -> None:
    client = real_client
    keys = client.keys
    first = parse_scan(unwrap(await client.store.call(leased_scan_call(keys, 0, "a", 3000))))
    assert first.scanned
    # A timer due now: the other worker's leased scan must leave it alone.
    await client.redis.zadd(keys.timers(0), {"T|no-run|1|0|nobody": 0})
    other = parse_scan(unwrap(await client.store.call(leased_scan_call(keys, 0, "b", 3000))))
    assert not other.scanned
    assert 0 < other.lease_left_ms <= 3000
    assert await client.redis.zcard(keys.timers(0)) == 1
    # Its holder renews and scans; one named dead by the death watch is taken over.
    assert parse_scan(unwrap(await client.store.call(leased_scan_call(keys, 0, "a", 3000)))
                      ).fired == 1
    taken = parse_scan(unwrap(await client.store.call(
        leased_scan_call(keys, 0, "b", 3000, dead=["a"]))))
    assert taken.scanned
    assert await client.redis.get(keys.timer_lease(0)) == b"b"
    # A scan without the lease (a nudge's) runs whoever holds it, and takes nothing.
    assert parse_scan(unwrap(await client.store.call(plain_scan_call(keys, 0)))).scanned
    assert await client.redis.get(keys.timer_lease(0)) == b"b"


async def test_two_workers_never_both_scan_a_shard_in_one_tick(real_client: Client) -> None:
    client = real_client
    a = ShardLeases(client.store, "a", fleet_size=lambda: 2, looks_per_s=50)
    b = ShardLeases(client.store, "b", fleet_size=lambda: 2, looks_per_s=50)
    scanned: dict[str, list[int]] = {"a": [], "b": []}

    async def tick(leases: ShardLeases) -> None:
        await leases.scan(nudged=False)
        scanned[leases.holder].extend(leases.held)

    for _ in range(20):  # both at once, again and again (looks come every ~40 ms)
        scanned = {"a": [], "b": []}
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick, a)
            tg.start_soon(tick, b)
        assert not set(scanned["a"]) & set(scanned["b"])
        assert not a.held & b.held
        await anyio.sleep(0.01)
    assert a.held | b.held == all_shards(client)
    # Two running workers split the shards the same way.
    await a.release()
    await b.release()
    async with running_worker(client, task_queue="q", workflows=[Forever]) as one, \
            running_worker(client, task_queue="q", workflows=[Forever]) as two:
        held_one = held_by(one)
        held_two = held_by(two)

        async def settled() -> bool:
            return held_one() | held_two() == all_shards(client)

        await eventually(settled)
        for _ in range(10):
            assert not held_one() & held_two()
            await anyio.sleep(0.1)


def held_by(worker: Worker) -> Callable[[], set[int]]:
    leases = worker._timers.leases
    assert leases is not None
    return lambda: set(leases.held)


async def run_times_out(client: Client, workflow_id: str) -> None:
    handle = await client.start_workflow(Forever.run, id=workflow_id, task_queue="q",
                                         run_timeout=timedelta(milliseconds=200))
    with anyio.fail_after(20), pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, WorkflowTimeoutError)


async def test_a_timer_fires_when_the_lease_holder_stopped_without_release(
    real_client: Client,
) -> None:
    client = real_client
    gone = ShardLeases(client.store, "gone-without-release")
    await gone.scan(nudged=False)  # takes every shard's lease, then is never heard of
    assert gone.held == all_shards(client)
    async with running_worker(client, task_queue="q", workflows=[Forever]) as worker:
        # The run timeout is the client's timer: only a scan of its shard fires it.
        await run_times_out(client, "lease-lapsed")
        assert held_by(worker)() == all_shards(client)


async def test_a_timer_fires_when_the_lease_holder_is_killed(
    real_client: Client, redis_url: str
) -> None:
    client = real_client
    holder = WorkerProcess(redis_url, client.keys.prefix, "q", "sdk.examples.order",
                           liveness=5.0).start()
    try:
        await anyio.to_thread.run_sync(holder.wait_ready)

        async def holds_all() -> bool:
            values = [await client.redis.get(client.keys.timer_lease(s))
                      for s in all_shards(client)]
            return values == [holder.identity.encode()] * client.keys.shards

        await eventually(holds_all)
        async with running_worker(client, task_queue="q", workflows=[Forever],
                                  liveness_timeout=5.0) as worker:
            seen_dead: list[str] = []
            worker.liveness.on_death.append(seen_dead.append)
            await anyio.sleep(0.3)  # the death watch sees the holder alive first
            assert holder.proc is not None
            holder.proc.send_signal(signal.SIGKILL)
            await eventually(lambda: _true_if(held_by(worker)() == all_shards(client)))
            # The death watch named it (its leases are taken at once, not at their lapse).
            assert holder.identity in seen_dead
            await run_times_out(client, "holder-killed")
    finally:
        holder.kill()


async def _true_if(value: bool) -> bool:
    return value
