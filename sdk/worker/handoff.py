"""Applying the cross-shard hand-offs (engine/handoff.py): every worker reads the
shards' outbox streams with the consumer group, applies each entry in its target's
shard (one rd_handoff call, idempotent by its request id), then acknowledges it.

An entry this worker read but did not acknowledge (it died, or Redis went away
between the call and the XACK) stays pending: any worker claims it once it has been
idle for the liveness timeout, and applying it again changes nothing. An entry the
library refuses (malformed) goes to the shard's dead letters at once, and one
delivered more than `max_deliveries` times when claimed (rd_claim)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio
import structlog
from redis.exceptions import ResponseError

from engine.calls import text_of, unwrap
from engine.handoff import (
    KIND,
    MalformedEntryError,
    ack_call,
    apply_call,
    ensure_outbox_groups,
    outbox_streams,
    shard_of_outbox,
)
from engine.store import Store
from sdk.worker.fleet import fleet_share
from sdk.worker.plumbing import IDLE_READ_BLOCK_MS, READ_BLOCK_MS, TRANSIENT, transient
from sdk.worker.task_entry import Fields

log = structlog.get_logger("redurable.worker")
#: What rd_handoff answers for an entry it can never apply (engine/lua/85_handoff.lua).
MALFORMED = "malformed hand-off entry"
#: How many workers, together, claim idle outbox entries once per liveness timeout:
#: each of K workers claims every K / CLAIMERS timeouts (at random phases), so an idle
#: fleet's claims cost Redis the same whatever its size.
CLAIMERS = 2


class Handoffs:
    def __init__(
        self,
        store: Store,
        consumer: str,
        *,
        liveness_ms: int,
        max_deliveries: int,
        stopping: Callable[[], bool],
        fleet_size: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.keys = store.keys
        self.consumer = consumer
        self.liveness_ms = liveness_ms
        self.max_deliveries = max_deliveries
        self.stopping = stopping
        self.streams = outbox_streams(self.keys)
        self.applied = 0
        self._last_claim = 0.0
        #: The live workers that claim too (this one included), as far as we know.
        self._fleet_size = fleet_size
        #: Seconds from one claim of idle entries to the next (this worker's share).
        self._claim_every = liveness_ms / 1000
        #: Random phases for the claims (module random is the workflows' concern).
        self._jitter = random.Random()

    async def run(self) -> None:
        await ensure_outbox_groups(self.store)
        block_ms = READ_BLOCK_MS
        while not self.stopping():
            try:
                applied = await self.poll_once(block_ms)
            except Exception as exc:
                if not transient(exc):
                    raise
                log.warning("handoff_read_failed", error=str(exc))
                await anyio.sleep(0.2)  # Redis away for a moment: go on when it is back
                continue
            block_ms = self.block_after(applied)

    def block_after(self, applied: int) -> int:
        """How long the next read blocks: after a read that applied nothing, as long as
        an idle poller's (sdk/worker/plumbing.py) when the store cuts a read short as
        the worker stops, but no later than the next claim of idle entries is due."""
        if applied or not self.store.reads_cut_short:
            return READ_BLOCK_MS
        claim_in_ms = (self._last_claim + self._claim_every - time.monotonic()) * 1000
        return max(READ_BLOCK_MS, min(IDLE_READ_BLOCK_MS, int(claim_in_ms)))

    async def poll_once(self, block_ms: int) -> int:
        """Read and apply new entries, and now and then claim idle ones; returns how
        many were applied."""
        applied = 0
        started = time.monotonic()
        entries = await self.store.read_group(self.consumer, self.streams, 64, block_ms)
        if not entries and block_ms and time.monotonic() - started < 0.005:
            await anyio.sleep(0.005)  # a server that does not block (fakeredis): no spin
        for stream, sid, fields in entries:
            applied += await self.apply(stream, sid, fields)
        if time.monotonic() - self._last_claim >= self._claim_every:
            self._last_claim = time.monotonic()
            self._claim_every = self.claim_every()
            applied += await self.claim_idle(self.liveness_ms)
        return applied

    def claim_every(self) -> float:
        """Seconds between two claims of idle entries: the liveness timeout in a fleet
        of up to CLAIMERS, else this worker's share of the fleet's claims."""
        fleet = self._fleet_size() if self._fleet_size is not None else 1
        return fleet_share(self.liveness_ms / 1000, fleet, CLAIMERS, self._jitter.random())

    async def claim_idle(self, min_idle_ms: int) -> int:
        """Apply the entries other consumers left pending longer than `min_idle_ms`."""
        applied = 0
        for shard, stream in enumerate(self.streams):
            claimed = await self.store.claim_stale(
                stream, shard, self.consumer, min_idle_ms, self.max_deliveries
            )
            for sid, fields in claimed:
                applied += await self.apply(stream, sid.decode(), fields)
        return applied

    async def apply(self, stream: str, sid: str, fields: Fields) -> int:
        try:
            reply = unwrap(await self.store.call(apply_call(self.keys, fields)))
        except (MalformedEntryError, ResponseError) as exc:
            if isinstance(exc, ResponseError) and MALFORMED not in str(exc):
                # Not the entry's fault (a server without this library version, during
                # a deploy): left pending, claimed again, dead-lettered by rd_claim
                # after max_deliveries.
                log.warning("handoff_apply_failed", entry=sid, error=str(exc))
                return 0
            # Refused by the library (or no target): no retry can help.
            log.error("handoff_dead_lettered", entry=sid, error=str(exc))
            await self.store.call(self.store.dead_letter_call(
                stream, shard_of_outbox(self.keys, stream), sid, f"hand-off refused: {exc}"))
            return 0
        except TRANSIENT as exc:
            log.warning("handoff_apply_failed", entry=sid, error=str(exc))
            return 0  # left pending: claimed and applied again (idempotent)
        kind = fields.get(KIND, b"").decode()
        log.debug("handoff_applied", kind=kind, entry=sid, outcome=text_of(reply[1]))
        if kind == "start_child" and text_of(reply[1]) == "started":
            # The queue registry is one namespace key: not part of the transition.
            await self.store.redis.sadd(
                self.keys.task_queues(), fields.get(b"task_queue", b"").decode()
            )
        await self.store.call(ack_call(stream, sid))
        self.applied += 1
        return 1
