"""A worker's timer loop: firing the due timers of every shard (engine/lua/40_timers.lua).

It used to scan every shard every `timer_interval` (50 ms), in every worker: most of
what an idle worker cost, and a cost that grew with the fleet. Now it sleeps until the
earliest due time the last scan saw (the server measures it: clock skew between worker
and server plays no part), woken early when a call of this process may have added an
earlier timer (engine/calls.py SETS_TIMERS), and never for longer than MAX_WAIT_S. A
call that adds timers (a workflow task start, commit or failure, an activity start or
completion, a cron chain's next run, a cross-shard hand-off) says when the earliest
one it added falls due (ms after the call, measured by the server): the next scan
moves to that time when it is sooner, and stays put when not (an activity's timeouts,
a long timer, a cron run hours away: no scan for them).
Two scans start at least DUE_GAP_S apart (timers due back to back fire in batches),
and those that nudges ask for `min_interval` apart (the worker's `timer_interval`:
under load they cost what the fixed-rate loop did).

Every timer is added by a transition that some worker makes (those calls, a timer
firing), so the worker that adds one wakes for it. MAX_WAIT_S bounds the rest: a timer
added by another process that does not scan (an async activity completed from a
client) or by a worker that died right after, and a server whose library predates the
next-due answer.

In a worker, the scans take turns (sdk/worker/timer_leases.py): a shard is scanned on
schedule by the one worker that holds its timer lease; the scan a nudge asks for
covers every shard, as all scans did before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

from engine.store import Store, TimerScan
from sdk.worker.timer_leases import ShardLeases

#: The longest sleep between two scans, whatever the next due time.
MAX_WAIT_S = 1.0
#: Wake this much after the next due time: a scan run a hair early finds nothing due.
DUE_MARGIN_S = 0.002
#: The shortest time between the starts of two scans woken by due times: timers due
#: back to back are fired in batches this far apart, not one scan each.
DUE_GAP_S = 0.01


class TimerLoop:
    """Fires due timers of one namespace (see the module doc)."""

    def __init__(
        self,
        store: Store,
        *,
        min_interval: float,
        max_wait: float = MAX_WAIT_S,
        leases: ShardLeases | None = None,
    ):
        self._store = store
        #: Which shards this worker scans on schedule; None: every shard, every scan.
        self.leases = leases
        #: The earliest due time (time.monotonic()) that nudges asked for and no scan
        #: covering every shard has met yet (with leases, a scheduled scan does not).
        self._nudge_due = math.inf
        #: The shortest time between the starts of two scans that a nudge asked for:
        #: under load (a nudge per transition) scans run no more often than the old
        #: fixed-rate loop ran (a due time still wakes the loop at once).
        self.min_interval = min_interval
        self.max_wait = max(max_wait, min_interval)
        #: Set when a nudge moved the next scan (`_scan_at`) earlier.
        self._moved = anyio.Event()
        #: When (time.monotonic()) the next scan starts; math.inf while one runs.
        self._scan_at = math.inf
        #: The start of the last scan, and the earliest due time heard while it ran.
        self._started = -math.inf
        self._heard = math.inf
        self.scans = 0

    def nudge(self, due: float | None = None) -> None:
        """A timer may have been added, falling due at `due` (time.monotonic()), None
        when unknown: scan by then (after min_interval at the soonest), unless the next
        scan comes first. While a scan runs, it may miss the timer: noted for after."""
        at = -math.inf if due is None else due + DUE_MARGIN_S
        self._nudge_due = min(self._nudge_due, at)
        if self._scan_at == math.inf:
            self._heard = min(self._heard, at)
            return
        at = max(at, self._started + self.min_interval)
        if at < self._scan_at:
            self._scan_at = at
            self._moved.set()

    def holder_died(self, worker: str) -> None:
        """The death watch saw `worker` die: take its timer leases now."""
        if self.leases is not None:
            self.leases.holder_died(worker)
            self.nudge(time.monotonic())

    async def _scan(self) -> TimerScan:
        due = self._nudge_due
        nudged = due <= time.monotonic()
        if nudged or self.leases is None:
            self._nudge_due = math.inf
        try:
            if self.leases is None:
                return await self._store.fire_timers()
            return await self.leases.scan(nudged)
        except BaseException:
            # Not scanned (a transient error: the loop restarts): the nudge still stands.
            self._nudge_due = min(self._nudge_due, due)
            raise

    def wait_for(self, fired_all: bool, next_in_ms: int | None) -> float:
        """How long after a scan the next one is due, unless nudged."""
        if not fired_all:
            return 0.0
        if next_in_ms is None:
            return self.max_wait
        # A worker holding no timer lease scans on its own schedule only when it looks
        # at the others' leases (next_in_ms tells when): nothing else needs it sooner.
        longest = self.max_wait if self.leases is None or self.leases.held else math.inf
        return min(longest, next_in_ms / 1000 + DUE_MARGIN_S)

    async def run(self, stopping: Callable[[], bool]) -> None:
        self._store.timer_listeners.append(self.nudge)
        try:
            while not stopping():
                self._scan_at, self._heard = math.inf, math.inf
                self._started = started = time.monotonic()
                scan = await self._scan()
                self.scans += 1
                # From the reply: the server measured the next due time during the scan.
                due_at = time.monotonic() + self.wait_for(not scan.more, scan.next_in_ms)
                heard = min(self._heard, self._nudge_due)
                self._scan_at = min(due_at, max(heard, started + self.min_interval))
                while True:  # until the scan time, which a nudge may move earlier
                    self._moved = anyio.Event()
                    wait = max(self._scan_at, started + DUE_GAP_S) - time.monotonic()
                    if wait <= 0:
                        break
                    with anyio.move_on_after(wait):
                        await self._moved.wait()
                    if not self._moved.is_set():
                        break
        finally:
            self._store.timer_listeners.remove(self.nudge)
            if self.leases is not None:
                await self.leases.release()
