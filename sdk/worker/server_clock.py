"""The worker's estimate of the server's clock, for the workflow code's time in a
one-write activity step (docs/design-notes.md "One-write activity steps"): the code runs
before the server has stamped anything, and its time must stay on the server's clock,
not the worker's (which may be skewed: scripts/chaos/clock_skew.py).

Each server time seen (the time a workflow task completion or a one-write step wrote
at, from their replies: the Functions' now_ms, so a time-skipping test server's skipped
clock too; stream ids are not, they follow the server's real clock) was read before it
reached us, so `server_ms - monotonic_ms_at_receipt` is a lower
bound of the offset between the two clocks: the estimate is the largest such bound
seen lately plus the monotonic clock now. It is a little behind the server, never ahead
(unless the server's clock steps back; the Lua refuses a time ahead of its own, or
more than a second behind)."""

from __future__ import annotations

import time

#: A bound older than this gives way to the next one seen (drift, a server clock that
#: stepped back): the estimate follows the server, not a stale best.
FRESH_S = 2.0
#: No server time seen for this long: no estimate (the step takes two writes).
STALE_S = 30.0


class ServerClock:
    def __init__(self) -> None:
        self._offset_ms = 0.0
        self._at: float | None = None

    def observe(self, server_ms: int, received: float | None = None) -> None:
        """A server time (ms) that reached us at `received` (monotonic s; now if None)."""
        at = time.monotonic() if received is None else received
        offset = server_ms - at * 1000.0
        if self._at is None or offset > self._offset_ms or at - self._at > FRESH_S:
            self._offset_ms, self._at = offset, at

    def now_ms(self) -> int | None:
        """The server's time now (ms, a little behind), or None when not known lately."""
        if self._at is None:
            return None
        mono = time.monotonic()
        if mono - self._at > STALE_S:
            return None
        return int(mono * 1000.0 + self._offset_ms)
