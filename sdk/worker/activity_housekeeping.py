"""Start marks and heartbeats of a worker's running activity attempts, batched into one
round trip per pass of a loop that wakes only when there is something to do.

An attempt is marked started (the transition that arms its start-to-close and heartbeat
timeouts) only once it has run LAZY_START_S: most activities end first and never pay for
it. While a marked attempt runs, the loop passes every HEARTBEAT_TICK_S to send what
`activity.heartbeat()` left pending."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import anyio
import structlog

from engine.store import Call
from sdk.worker.activity_attempt import RunningActivity
from sdk.worker.plumbing import TaskPlumbing

log = structlog.get_logger("redurable.worker")
#: Activities that finish within this never pay for a start transition.
LAZY_START_S = 0.05
#: How often heartbeats are collected while a marked (long) attempt runs.
HEARTBEAT_TICK_S = 0.025


class Housekeeping:
    """The start marks and heartbeats of the attempts in `running` (ActivityTasks')."""

    def __init__(
        self, plumbing: TaskPlumbing, running: Mapping[tuple[str, str], RunningActivity]
    ) -> None:
        self._plumbing = plumbing
        self._running = running
        #: Wakes the loop: set by a timer armed for the next start mark due, or
        #: HEARTBEAT_TICK_S on while a marked attempt runs (wake_at).
        self._due = anyio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self._at = 0.0

    def wake_at(self, at: float) -> None:
        """Wake the loop at `at` (monotonic), unless it wakes earlier."""
        if self.timer is not None:
            if self._at <= at:
                return
            self.timer.cancel()
        self._at = at
        self.timer = asyncio.get_running_loop().call_later(
            max(0.0, at - time.monotonic()), self.wake)

    def wake(self) -> None:
        self.timer = None
        self._due.set()

    def nothing_runs(self) -> None:
        """The last attempt ended: a wake would find nothing to mark or beat for."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def loop(self) -> None:
        """One pass per wake: the start marks due and the heartbeats pending, in one
        round trip. A 'stale'/'cancel' answer cancels the attempt.

        A worker running short activities, as most are, never wakes it (a 40 Hz tick
        while any attempt ran was a fixed cost per worker, paid K times by a fleet of
        K)."""
        store, identity = self._plumbing.store, self._plumbing.identity
        while not self._plumbing.stopping:
            await self._due.wait()
            self._due = anyio.Event()
            now = time.monotonic()
            batch: list[tuple[RunningActivity, Call]] = []
            beating = False
            next_mark = float("inf")
            for r in list(self._running.values()):
                task = r.task
                if not r.marked and now >= r.mark_at:
                    r.marked = True
                    batch.append((r, store.act_start_call(
                        task.get("workflow_id"), task.get("run_id"), task.get("activity_id"),
                        task.get("attempt"), task.msg_id, task.stream, identity)))
                if r.marked:
                    beating = True
                else:
                    next_mark = min(next_mark, r.mark_at)
                if r.context.heartbeat_pending:
                    r.context.heartbeat_pending = False
                    # Encoded by activity.heartbeat(), where a bad value raises.
                    batch.append((r, store.act_heartbeat_call(
                        task.get("workflow_id"), task.get("run_id"), task.get("activity_id"),
                        task.get("attempt"), r.context.heartbeat_payload)))
            if beating or next_mark < float("inf"):
                self.wake_at(min(next_mark, now + HEARTBEAT_TICK_S) if beating else next_mark)
            if not batch:
                continue
            replies = await store.call_many([call for _, call in batch])
            for (r, _), reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    log.warning("activity_housekeeping_failed", error=str(reply))
                elif reply[0] in (b"cancel", b"stale") and (r.task.stream, r.task.msg_id) in (
                    self._running
                ):
                    r.cancel()
