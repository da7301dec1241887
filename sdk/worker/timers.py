"""A worker's timer loop: firing the due timers of every shard (engine/lua/40_timers.lua).

It used to scan every shard every `timer_interval` (50 ms), in every worker: most of
what an idle worker cost, and a cost that grew with the fleet. Now it sleeps until the
earliest due time the last scan saw (the server measures it: clock skew between worker
and server plays no part), woken early when a call of this process may have added an
earlier timer (engine/calls.py SETS_TIMERS), and never for longer than MAX_WAIT_S.
Two scans start at least DUE_GAP_S apart (timers due back to back fire in batches),
and those that nudges ask for `min_interval` apart (the worker's `timer_interval`:
under load they cost what the fixed-rate loop did).

Every timer is added by a transition that some worker makes (a workflow task commit,
an activity start or completion, a timer firing), so the worker that adds one wakes
for it. MAX_WAIT_S bounds the rest: a timer added by another process that does not
scan (an async activity completed from a client) or by a worker that died right after,
a server whose library predates the next-due answer, and the cron follow-up of a run
that a completion without commands closed at the history limit (such completions, a
signal handled and nothing decided, wake nobody: engine/store.py wft_complete_call).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from engine.store import Store

#: The longest sleep between two scans, whatever the next due time.
MAX_WAIT_S = 1.0
#: Wake this much after the next due time: a scan run a hair early finds nothing due.
DUE_MARGIN_S = 0.002
#: The shortest time between the starts of two scans woken by due times: timers due
#: back to back are fired in batches this far apart, not one scan each.
DUE_GAP_S = 0.01


class TimerLoop:
    """Fires due timers of one namespace (see the module doc)."""

    def __init__(self, store: Store, *, min_interval: float, max_wait: float = MAX_WAIT_S):
        self._store = store
        #: The shortest time between the starts of two scans that a nudge asked for:
        #: under load (a nudge per transition) scans run no more often than the old
        #: fixed-rate loop ran (a due time still wakes the loop at once).
        self.min_interval = min_interval
        self.max_wait = max(max_wait, min_interval)
        self._nudged = anyio.Event()
        self.scans = 0

    def nudge(self) -> None:
        """A timer may have been added: scan again (after min_interval at the soonest)."""
        self._nudged.set()

    def wait_for(self, fired_all: bool, next_in_ms: int | None) -> float:
        """How long after a scan the next one is due, unless nudged."""
        if not fired_all:
            return 0.0
        if next_in_ms is None:
            return self.max_wait
        return min(self.max_wait, next_in_ms / 1000 + DUE_MARGIN_S)

    async def run(self, stopping: Callable[[], bool]) -> None:
        self._store.timer_listeners.append(self.nudge)
        try:
            while not stopping():
                # Before the scan: a nudge from now on may be about a timer it misses.
                self._nudged = anyio.Event()
                started = time.monotonic()
                scan = await self._store.fire_timers()
                self.scans += 1
                # From the reply: the server measured the next due time during the scan.
                due_at = time.monotonic() + self.wait_for(not scan.more, scan.next_in_ms)
                with anyio.move_on_after(due_at - time.monotonic()):
                    await self._nudged.wait()
                scan_at = due_at
                if self._nudged.is_set():
                    scan_at = min(due_at, started + self.min_interval)
                await anyio.sleep(max(0.0, max(scan_at, started + DUE_GAP_S) - time.monotonic()))
        finally:
            self._store.timer_listeners.remove(self.nudge)
