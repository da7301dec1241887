"""Wake entries: a timer that a client's call added wakes some live worker's timer loop.

A worker's own calls that add timers nudge its timer loop (sdk/worker/timers.py), so
such a timer fires when due, whoever holds its shard's timer lease. A client's call (a
start's run timeout or first-task backoff, an async activity's retry after
`complete_activity_by_ref`, a schedule's start) nudges no worker: its timer used to
fire at the next scan of the lease's holder, up to a second late, and if that worker
hung (alive but stalled), only once its lease lapsed and another took over (~4 s).

Now the Function of such a call adds a wake entry to the shard's wake stream
(`Keys.timer_wake`, in the shard's slot) when the timer falls due within
TIMER_WAKE_WINDOW_MS (engine/timer_leases.py). The workers' workflow pollers read the
wake streams in the XREADGROUP they block on anyway (no read of its own, no extra round
trip while idle), all but the lease holder's for the shards it holds (`read_streams`),
so the entry goes to one worker other than the holder, which nudges its timer loop when
the timer falls due (a scan of every shard, without the leases, as for its own timers)
and acknowledges the entry in the background. An entry that reaches a worker that then
dies or hangs is lost: the timer waits for the holder's scan (or the lease's lapse, if
the holder hangs too), as before; its pending entry is dropped by a later
acknowledgement (WAKE_STALE_MS). docs/design-notes.md "Timers that clients add wake a
worker" has the reasons.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Set as AbstractSet

import anyio
import structlog
from redis.exceptions import RedisError

from engine.store import Store
from engine.timer_leases import TimerWake, parse_wake, wake_ack_call
from sdk.worker.plumbing import TaskPlumbing
from sdk.worker.task_entry import TaskEntry
from sdk.worker.timers import DUE_GAP_S

log = structlog.get_logger("redurable.worker")


class TimerWakes:
    """Reads of the shards' wake streams, for one worker's workflow poller."""

    def __init__(
        self,
        plumbing: TaskPlumbing,
        server_now_ms: Callable[[], int | None],
        held_shards: Callable[[], AbstractSet[int]] | None = None,
    ) -> None:
        self._plumbing = plumbing
        self._store: Store = plumbing.store
        keys = plumbing.keys
        #: Every shard's wake stream.
        self.streams = [keys.timer_wake(s) for s in range(keys.shards)]
        self._shard_of = {stream: s for s, stream in enumerate(self.streams)}
        #: The shards whose timer lease we hold (ShardLeases.held): we do not read
        #: their wake streams (see `read_streams`). None: we read every shard's.
        self._held_shards = None if plumbing.store.reads_kept else held_shards
        self._read_list: tuple[frozenset[int], list[str]] = (frozenset(), self.streams)
        #: The worker's estimate of the server's clock (ServerClock.now_ms).
        self._server_now_ms = server_now_ms
        #: Due times (in DUE_GAP_S slots of time.monotonic()) with a nudge on its way.
        self._waiting: set[int] = set()

    def read_streams(self) -> list[str]:
        """The wake streams the poller reads now: those of the shards whose lease we do
        not hold. A blocked read gets the entries that come in the order the reads
        blocked, so a worker that hangs with its read blocked (for up to the idle read's
        10 s) would take the wakes of every shard; the wake is for when the holder hangs,
        and the holder scans its shards anyway (at most a second apart): so it leaves
        its shards' wakes to the others. (A worker whose store keeps blocked reads
        between calls, on a cluster, reads the same streams every time: all of them.)"""
        if self._held_shards is None:
            return self.streams
        held = self._held_shards()
        if held != self._read_list[0]:
            self._read_list = (frozenset(held), [w for s, w in enumerate(self.streams)
                                                 if s not in held])
        return self._read_list[1]

    def take(self, entries: list[TaskEntry]) -> list[TaskEntry]:
        """The workflow tasks of a read; its wake entries nudge the timer loop when
        their timers fall due, and are acknowledged in the background."""
        wakes = [e for e in entries if e.stream in self._shard_of]
        if not wakes:
            return entries
        received = time.monotonic()
        by_shard: dict[int, list[str]] = defaultdict(list)
        for entry in wakes:
            by_shard[self._shard_of[entry.stream]].append(entry.msg_id)
            wake = parse_wake(entry.fields)
            if wake is not None:
                self._nudge_when_due(self.due_at(wake, received))
        self._plumbing.stats["timer_wakes"] += len(wakes)
        tg = self._plumbing.tg
        if tg is not None:
            tg.start_soon(self._ack, dict(by_shard))
        return [e for e in entries if e.stream not in self._shard_of]

    def _nudge_when_due(self, due: float) -> None:
        # The loop remembers one nudge, its earliest (sdk/worker/timers.py): a second
        # wake due later, heard before the first one's scan, would be forgotten by that
        # scan. So each nudge is given when its timer falls due; at that moment an
        # earlier nudge is due too, and one scan meets both. Wakes due within the same
        # DUE_GAP_S share one nudge.
        slot = math.ceil(due / DUE_GAP_S)
        tg = self._plumbing.tg
        if slot in self._waiting:
            return
        if tg is None:
            self._nudge(due)
            return
        self._waiting.add(slot)
        tg.start_soon(self._nudge_at, slot * DUE_GAP_S, slot)

    async def _nudge_at(self, due: float, slot: int) -> None:
        try:
            await anyio.sleep(max(0.0, due - time.monotonic()))
            self._nudge(due)
        finally:
            self._waiting.discard(slot)

    def _nudge(self, due: float) -> None:
        for listener in list(self._store.timer_listeners):
            listener(due)

    def due_at(self, wake: TimerWake, received: float) -> float:
        """When (time.monotonic()) the entry's timer falls due, erring late, never early
        (a scan before the timer is due fires nothing, and nobody asks for another):
        `due_in` after the entry reached us, or sooner by as much as the server's clock
        (as the worker estimates it, a little behind the server) says it sat unread."""
        left = wake.due_in_ms
        server_now = self._server_now_ms()
        if server_now is not None:
            left = min(left, wake.at_ms + wake.due_in_ms - server_now)
        return received + max(0, left) / 1000

    async def _ack(self, by_shard: dict[int, list[str]]) -> None:
        keys, consumer = self._store.keys, self._plumbing.identity
        try:
            await self._store.call_many(
                [wake_ack_call(keys, shard, consumer, ids) for shard, ids in by_shard.items()])
        except (RedisError, OSError) as exc:
            # Left pending: a later acknowledgement of the shard drops them when stale.
            log.info("timer_wake_ack_failed", error=str(exc))
