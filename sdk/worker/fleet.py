"""A worker's share of a chore that the workers of a task queue do together.

Some chores need doing a few times a second by the task queue as a whole, not by each
worker: looking for dead workers (sdk/worker/presence.py), for idle entries
(sdk/worker/liveness.py, sdk/worker/handoff.py), for due schedules
(sdk/worker/scheduler.py), at timer shards leased by others (sdk/worker/timer_leases.py).
If every worker did them at the pace a lone worker must, an idle fleet of K workers
would cost Redis K times a lone worker's; so each worker takes turns that grow with K
and the fleet's pace stays the same whatever its size. K is `Worker._fleet_size`.
"""

from __future__ import annotations


def fleet_share(
    every_s: float, fleet: int, takers: int, jitter: float, *, spread_alone: bool = False
) -> float:
    """Seconds until this worker's next turn at a chore that the fleet does `takers`
    times per `every_s` in all.

    In a fleet of up to `takers` workers, each does it every `every_s` (steady: a lone
    worker keeps its promise, a schedule seen within a second, say). In a larger one,
    each does it every `every_s * fleet / takers` on average, spread over half to one
    and a half times that by `jitter` (uniform in [0, 1)) so that the workers' turns
    interleave rather than fall together. `spread_alone`: spread a small fleet's turns
    too. A fleet size below one (not known yet) counts as one."""
    if fleet <= takers and not spread_alone:
        return every_s
    return every_s * max(1.0, fleet / takers) * (0.5 + jitter)
