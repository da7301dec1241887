"""Which worker scans a shard's timers: the holder of the shard's timer lease.

Every worker used to scan every shard at least once a second, so an idle fleet of K
workers cost Redis K scans per shard per second and each one found nothing. Now a
shard is scanned on schedule by one worker at a time: the one holding the shard's
timer lease (`Keys.timer_lease`, a short-lived key in the shard's own slot, taken and
renewed by the scan itself in one Function call: engine/lua/40_timers.lua). The
others look at a shard held by someone else only now and then, spread over the fleet
so that the fleet looks about LOOKS_PER_S times a second in all, whatever its size,
and take the shard over when its lease has lapsed. A worker the death watch finds
dead (sdk/worker/presence.py) is taken over at once: its leases are taken at the
next scan (its id goes with the call). One that stops gives its leases up.

A timer this worker added (a workflow task, an activity, ...) may fall due before the
holder's next scan, and the holder does not know of it: the scan that the timer's
nudge asks for (sdk/worker/timers.py) covers the shards held by others too, without
their lease, as every scan did before. So a timer fires as soon as it did, whoever
holds the lease; what is gone is the idle scanning that grew with the fleet.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import anyio
import structlog

from engine.calls import Call, unwrap
from engine.run_chain import CronFire, cron_next_call
from engine.store import Store, TimerScan
from engine.timer_leases import (
    SCAN_LIMIT,
    leased_scan_call,
    parse_scan,
    plain_scan_call,
    release_call,
)
from sdk.worker.fleet import fleet_share

log = structlog.get_logger("redurable.worker")

#: How long a lease lasts unless renewed. Its holder scans (and renews) at least every
#: MAX_WAIT_S (1 s) of sdk/worker/timers.py: three missed scans in a row lose it.
LEASE_MS = 3000
#: How often, fleet-wide, the workers that do not hold a shard's lease look at it
#: (each of K workers every K / LOOKS_PER_S seconds, at a random phase): a lease that
#: lapsed without a death the death watch saw (a hung holder, one of another task
#: queue) is taken over about 1 / LOOKS_PER_S seconds after it lapsed.
LOOKS_PER_S = 1.0
#: The longest a worker waits for its leases' release when it stops.
RELEASE_TIMEOUT_S = 1.0


class ShardLeases:
    """The timer leases one worker holds, and its scans (see the module doc)."""

    def __init__(
        self,
        store: Store,
        holder: str,
        *,
        fleet_size: Callable[[], int] | None = None,
        lease_ms: int = LEASE_MS,
        looks_per_s: float = LOOKS_PER_S,
    ) -> None:
        self._store = store
        self.holder = holder
        self._fleet_size = fleet_size
        self.lease_ms = lease_ms
        self.looks_per_s = looks_per_s
        #: Shards whose lease we hold (as of our last scan of each).
        self.held: set[int] = set()
        #: When (monotonic) we next look at the shards that others hold.
        self._look_at = -math.inf
        #: Workers found dead since our last look: their leases are ours to take.
        self._dead: set[str] = set()
        #: Random phases for the looks (module random is the workflows' concern).
        self._jitter = random.Random()

    def holder_died(self, worker: str) -> None:
        """The death watch saw `worker` die: look at once, taking its leases."""
        self._dead.add(worker)
        self._look_at = -math.inf

    def look_in(self, lease_left_ms: int) -> float:
        """Seconds until the next look at shards held by others: this worker's share of
        the fleet's looks, and not before the lease seen would lapse."""
        fleet = self._fleet_size() if self._fleet_size is not None else 1
        share = fleet_share(1 / self.looks_per_s, fleet, 1, self._jitter.random(),
                            spread_alone=True)
        return max(lease_left_ms / 1000, share)

    async def scan(self, nudged: bool) -> TimerScan:
        """One scan: the shards we hold, those held by others when it is time to look
        at them (or `nudged`: without their lease). Its next_in_ms is the earliest of
        our shards' next due time and our next look."""
        keys = self._store.keys
        now = time.monotonic()
        look = now >= self._look_at
        dead = sorted(self._dead)
        leased = [s for s in range(keys.shards) if s in self.held or look]
        plain = [s for s in range(keys.shards) if s not in leased] if nudged else []
        calls: list[Call] = [leased_scan_call(keys, s, self.holder, self.lease_ms, dead)
                             for s in leased]
        calls += [plain_scan_call(keys, s) for s in plain]
        if not calls:
            return TimerScan(0, False, self._ms_until_look())
        replies = await self._store.call_many(calls)
        fired, more, next_in = 0, False, None
        fires: list[CronFire] = []
        lease_left = 0
        for shard, reply in zip([*leased, *plain], replies, strict=True):
            answer = parse_scan(unwrap(reply))
            if not answer.scanned:
                if shard in self.held:
                    log.info("timer_lease_lost", shard=shard)
                self.held.discard(shard)
                lease_left = max(lease_left, answer.lease_left_ms)
                continue
            fires.extend(answer.crons)
            fired += answer.fired
            more = more or answer.fired >= SCAN_LIMIT
            if shard in plain:
                continue  # its holder wakes for its next due time
            self.held.add(shard)
            if answer.next_in_ms is not None:
                next_in = answer.next_in_ms if next_in is None else min(next_in,
                                                                        answer.next_in_ms)
        if look:
            self._dead -= set(dead)
        if len(self.held) == keys.shards:
            self._look_at = math.inf
        elif look or lease_left or self._look_at == math.inf:
            # Not before the lapse of the leases seen: looking earlier finds them held.
            self._look_at = time.monotonic() + self.look_in(lease_left)
        if fires:  # cron runs that closed: start each chain's next run (engine/run_chain.py)
            # An error reply is left in its slot: the fire's lease brings it back.
            await self._store.call_many([cron_next_call(keys, f) for f in fires])
        look_in_ms = self._ms_until_look()
        if look_in_ms is not None:
            next_in = look_in_ms if next_in is None else min(next_in, look_in_ms)
        return TimerScan(fired, more, next_in)

    def _ms_until_look(self) -> int | None:
        if self._look_at == math.inf:
            return None
        return max(0, int((self._look_at - time.monotonic()) * 1000))

    async def release(self) -> None:
        """Give up our leases (we stop): the others take the shards at their next look."""
        held, self.held = sorted(self.held), set()
        # Also when the timer loop only restarts (worker._guard, after a transient error):
        # holding every shard, we had stopped looking (_look_at inf), and with nothing
        # held and no look due, no scan ran again but a nudge's, and a timer that no
        # nudge of ours asked for (or whose nudge the failed scan took) never fired.
        self._look_at = -math.inf
        if not held:
            return
        with anyio.move_on_after(RELEASE_TIMEOUT_S, shield=True):
            try:
                await self._store.call_many(
                    [release_call(self._store.keys, s, self.holder) for s in held])
            except Exception as exc:  # best effort: the leases lapse anyway
                log.info("timer_lease_release_failed", error=str(exc))
