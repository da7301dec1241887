"""The calls of a timer scan that takes turns: one shard's rd_fire_timers under the
shard's timer lease (`Keys.timer_lease`), the same scan without it, and the lease's
release (engine/lua/40_timers.lua). sdk/worker/timer_leases.py decides which shards a
worker scans; each call stays inside its shard's hash slot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.calls import Call
from engine.keys import Keys
from engine.run_chain import CronFire, cron_fires

#: Timers fired per shard per scan (more are left for the next scan, at once).
SCAN_LIMIT = 200


@dataclass(frozen=True)
class ShardScan:
    """One shard's answer to a scan."""

    #: False: another worker holds the shard's lease; nothing was scanned.
    scanned: bool
    fired: int = 0
    #: Ms from the scan to the shard's earliest timer left (server clock); None: none.
    next_in_ms: int | None = None
    #: Ms left on the other worker's lease (when not scanned).
    lease_left_ms: int = 0
    crons: list[CronFire] = field(default_factory=list)


def leased_scan_call(
    keys: Keys, shard: int, holder: str, lease_ms: int, dead: Sequence[str] = (),
    limit: int = SCAN_LIMIT,
) -> Call:
    """Scan `shard` if `holder` holds its lease or can take it (free, or held by one of
    the `dead`), renewing the lease for `lease_ms`."""
    return Call(
        "rd_fire_timers",
        [keys.timers(shard), keys.sticky_timers(shard), keys.timer_lease(shard)],
        [keys.shard_prefix(shard), limit, holder, lease_ms, *dead],
    )


def plain_scan_call(keys: Keys, shard: int, limit: int = SCAN_LIMIT) -> Call:
    """Scan `shard` whoever holds its lease (a timer this worker added may fall due
    before the holder's next scan: the holder does not know of it)."""
    return Call("rd_fire_timers", [keys.timers(shard), keys.sticky_timers(shard)],
                [keys.shard_prefix(shard), limit])


def release_call(keys: Keys, shard: int, holder: str) -> Call:
    return Call("rd_timer_lease_release", [keys.timer_lease(shard)], [holder])


def parse_scan(answer: Any) -> ShardScan:
    """An rd_fire_timers reply (not an error), with or without the lease."""
    if len(answer) > 4 and int(answer[4]) == 0:
        return ShardScan(scanned=False, lease_left_ms=max(0, int(answer[5])))
    next_in = int(answer[2]) if len(answer) > 2 and int(answer[2]) >= 0 else None
    return ShardScan(scanned=True, fired=int(answer[0]), next_in_ms=next_in,
                     crons=cron_fires(answer))


# --- wake entries (engine/lua/00_common.lua wake_for_timers) ----------------------------
#: A client's call (no worker's timer loop hears of it) that adds a timer due within this
#: many ms adds a wake entry to the shard's wake stream. The Lua holds the same number
#: (TIMER_WAKE_WINDOW_MS; a test pins the two). Past it, a hung lease holder has lost the
#: lease and another worker scans the shard before the timer falls due: the lease
#: (sdk/worker/timer_leases.py LEASE_MS, 3 s) plus about a second for the next look.
TIMER_WAKE_WINDOW_MS = 4000
#: Wake entries pending this long (delivered to a worker that died or stopped before it
#: acknowledged them) are dropped by the next acknowledgement of their shard.
WAKE_STALE_MS = 30_000


@dataclass(frozen=True)
class TimerWake:
    """One wake entry: a timer falls due `due_in_ms` after `at_ms` (server clock)."""

    due_in_ms: int
    at_ms: int


def parse_wake(fields: dict[bytes, bytes]) -> TimerWake | None:
    """A wake entry's fields, None when they are not one (nothing to wake for)."""
    try:
        return TimerWake(int(fields[b"due_in"]), int(fields[b"at"]))
    except (KeyError, ValueError):
        return None


def wake_ack_call(keys: Keys, shard: int, consumer: str, ids: Sequence[str]) -> Call:
    """Acknowledge and delete wake entries `consumer` read (and any gone stale)."""
    return Call("rd_timer_wake_ack", [keys.timer_wake(shard)],
                [consumer, WAKE_STALE_MS, *ids])
