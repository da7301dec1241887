"""Timer scans that take turns (sdk/worker/timer_leases.py): the loop of a worker that
holds no lease, nudges, deaths, and the fleet's shares of the idle looks and claims."""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from engine.store import Store, TimerScan
from sdk import Client
from sdk.worker.handoff import Handoffs
from sdk.worker.timer_leases import ShardLeases
from sdk.worker.timers import TimerLoop

pytestmark = pytest.mark.anyio


class StubLeases:
    """Scans as a ShardLeases would: `held` shards, the next look `look_ms` away."""

    def __init__(self, held: set[int], look_ms: int) -> None:
        self.held = held
        self.look_ms = look_ms
        self.scans: list[tuple[float, bool]] = []
        self.dead: list[str] = []
        self.released = False

    async def scan(self, nudged: bool) -> TimerScan:
        self.scans.append((time.monotonic(), nudged))
        return TimerScan(0, False, self.look_ms)

    def holder_died(self, worker: str) -> None:
        self.dead.append(worker)

    async def release(self) -> None:
        self.released = True


class StubStore:
    def __init__(self) -> None:
        self.timer_listeners: list[Callable[[float | None], None]] = []


async def run_loop(leases: StubLeases, seconds: float,
                   during: Callable[[TimerLoop], None] | None = None) -> TimerLoop:
    store: Store = StubStore()  # type: ignore[assignment]
    loop = TimerLoop(store, min_interval=0.02, max_wait=0.1,
                     leases=leases)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run, lambda: False)
        await anyio.sleep(seconds / 2)
        if during is not None:
            during(loop)
        await anyio.sleep(seconds / 2)
        tg.cancel_scope.cancel()
    return loop


async def test_a_worker_holding_no_lease_sleeps_until_its_next_look() -> None:
    leases = StubLeases(held=set(), look_ms=10_000)
    await run_loop(leases, 0.5)
    assert len(leases.scans) == 1  # not one per max_wait (0.1 s)
    assert leases.released  # it gives its leases up as it stops


async def test_a_lease_holder_still_scans_every_max_wait() -> None:
    leases = StubLeases(held={0}, look_ms=10_000)
    await run_loop(leases, 0.5)
    assert 4 <= len(leases.scans) <= 6


async def test_a_nudge_scans_every_shard_only_once_its_timer_is_due() -> None:
    leases = StubLeases(held=set(), look_ms=10_000)

    def nudge(loop: TimerLoop) -> None:
        loop.nudge(time.monotonic() + 0.1)

    await run_loop(leases, 0.6, nudge)
    assert [nudged for _, nudged in leases.scans] == [False, True]
    assert leases.scans[1][0] - leases.scans[0][0] >= 0.4  # 0.3 s in, 0.1 s later


async def test_a_death_seen_takes_the_leases_at_once() -> None:
    leases = StubLeases(held=set(), look_ms=10_000)
    await run_loop(leases, 0.4, lambda loop: loop.holder_died("w-1"))
    assert leases.dead == ["w-1"]
    assert len(leases.scans) == 2


async def test_an_idle_fleet_looks_at_a_shard_about_once_a_second_in_all(
    fake_client: Client,
) -> None:
    for fleet in (2, 20, 100):
        leases = ShardLeases(fake_client.store, "me", fleet_size=functools.partial(int, fleet))
        periods = [leases.look_in(lease_left_ms=0) for _ in range(2000)]
        # K workers, each every K s on average: the fleet's looks are ~1/s.
        assert statistics.mean(periods) == pytest.approx(fleet, rel=0.05)
    assert leases.look_in(lease_left_ms=250_000) == 250.0  # not before the lapse


async def test_shard_leases_against_fakeredis(fake_client: Client) -> None:
    store = fake_client.store
    a = ShardLeases(store, "a", fleet_size=lambda: 2)
    b = ShardLeases(store, "b", fleet_size=lambda: 2)
    await a.scan(nudged=False)
    assert a.held == set(range(store.keys.shards))
    scan = await b.scan(nudged=False)
    assert b.held == set()
    assert scan.next_in_ms is not None and scan.next_in_ms >= 1000
    await a.release()
    b.holder_died("nobody")  # look again now
    await b.scan(nudged=False)
    assert b.held == set(range(store.keys.shards))


async def test_the_fleet_shares_the_hand_off_claims(fake_client: Client) -> None:
    def every(fleet: int) -> float:
        handoffs = Handoffs(fake_client.store, "me", liveness_ms=5000,
                            max_deliveries=3, stopping=lambda: False,
                            fleet_size=lambda: fleet)
        return statistics.mean(handoffs.claim_every() for _ in range(2000))

    assert every(1) == every(2) == 5.0
    assert every(20) == pytest.approx(50.0, rel=0.05)


async def test_a_nudged_scan_fires_in_shards_held_by_others(fake_client: Client) -> None:
    store = fake_client.store
    a = ShardLeases(store, "a")
    b = ShardLeases(store, "b")
    await a.scan(nudged=False)
    await b.scan(nudged=False)  # looks, finds every shard held
    await fake_client.redis.zadd(store.keys.timers(1), {"T|no-run|1|0|nobody": 0})
    assert (await b.scan(nudged=False)).fired == 0  # not its shard, not its time to look
    assert (await b.scan(nudged=True)).fired == 1  # a timer it added is due: every shard
    assert b.held == set()  # and it took no lease


async def test_a_timer_loop_restarted_after_an_error_scans_again(fake_client: Client) -> None:
    """A transient error (BUSY, a lost connection) in a scan ends the timer loop, and
    worker._guard starts it again. Its finally gave the leases up (`held` emptied), but
    a worker that held every shard had stopped looking at the others' (next look: never),
    so the new loop scanned nothing: a timer whose nudge the failed scan had taken never
    fired (a one-worker test hung on a BUSY spell: tests/chaos/test_busy_server.py)."""
    store = fake_client.store
    real_call_many = store.call_many
    leases = ShardLeases(store, "me")
    await leases.scan(nudged=False)
    assert leases.held == set(range(store.keys.shards))
    loop = TimerLoop(store, min_interval=0.01, max_wait=0.05, leases=leases)
    # A timer of ours (the call that added it nudged us), due now, and a busy server.
    await fake_client.redis.zadd(store.keys.timers(1), {"T|no-run|1|0|nobody": 0})
    loop.nudge(time.monotonic() - 1)
    failures = [RuntimeError("BUSY Redis is busy running a script.")]

    async def call_many(calls: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_call_many(calls)

    store.call_many = call_many  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="BUSY"):
        await loop.run(lambda: False)
    assert leases.held == set()
    assert loop._nudge_due < time.monotonic()  # the failed scan left the nudge standing
    assert leases._look_at == -math.inf  # and the leases are looked at again at once
    # Restarted (as _guard does): the timer fires.
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop.run, lambda: False)
            while await fake_client.redis.zcard(store.keys.timers(1)):
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()



async def test_a_restarted_timer_loop_takes_its_leases_back(fake_client: Client) -> None:
    """The same without a nudge: a timer a client call added (no worker is nudged) in
    a shard whose lease the restarted loop had held fires: it looks again at once."""
    store = fake_client.store
    leases = ShardLeases(store, "me")
    await leases.scan(nudged=False)
    await leases.release()  # as the failed loop's finally does
    await fake_client.redis.zadd(store.keys.timers(0), {"T|no-run|1|0|nobody": 0})
    loop = TimerLoop(store, min_interval=0.01, max_wait=0.05, leases=leases)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop.run, lambda: False)
            while await fake_client.redis.zcard(store.keys.timers(0)):
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
