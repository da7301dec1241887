"""A worker's standing in its task queue: its heartbeat and presence subscription, the
touch that keeps its in-flight tasks from being claimed, and the claiming of the tasks
of workers that died (docs/recovery.md). Each part of the worker that takes tasks over
(a `Claimant`: the workflow-task and activity-task paths, the query answerer) says how
much it has room for and what to do with what is claimed."""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

import anyio
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from engine.cluster_redis import as_cluster
from engine.keys import GROUP
from sdk.client.registry import LIVE_WITHIN_MS
from sdk.worker.fleet import fleet_share
from sdk.worker.plumbing import TaskPlumbing
from sdk.worker.presence import CHECK_INTERVAL_S, DeathWatch, PresenceHolder

log = structlog.get_logger("redurable.worker")
Fields = dict[bytes, bytes]
#: Workers and consumers silent this long are forgotten (checked every TIDY_INTERVAL_S).
DEPARTED_AFTER_MS = 10 * 60 * 1000
TIDY_INTERVAL_S = 60.0
#: How many of a task queue's workers, together, look for entries left idle past the
#: liveness timeout once per beat interval: each of K workers looks every
#: K / IDLE_CLAIMERS beats (at random phases), so the fleet's XPENDING calls stay the
#: same whatever its size. (Those of a worker whose death presence showed are claimed
#: at once, by the death watch; this is the fallback for a hung one.)
IDLE_CLAIMERS = 2


class Claimant(Protocol):
    """A part of the worker that takes over the entries of dead workers on its streams."""

    @property
    def claim_streams(self) -> Sequence[str]:
        """The streams it polls, whose entries it takes over."""

    @property
    def claims_idle(self) -> bool:
        """Whether entries idle past the liveness timeout are taken too, not only those
        of workers whose death presence showed: only held entries are touched."""

    def claim_limit(self, stream: str) -> int | None:
        """How many entries it has room for now; None: no limit."""

    def suspect_room(self, stream: str) -> int | None:
        """How many suspects (entries delivered more than once) it can hold now; None:
        no limit (rd_claim_from)."""

    def adopt(
        self, stream: str, claimed: list[tuple[bytes, Fields]], suspects: AbstractSet[bytes]
    ) -> None:
        """Take claimed entries in hand (they are pending on us from now on)."""


class ServerClock:
    """Now on the server's clock. Times that other processes compare (beats, query
    deadlines) are on the server's clock, so a worker whose clock is minutes off is
    neither "dead" nor dropping queries. The offset is measured at every beat."""

    def __init__(self) -> None:
        #: Server clock minus ours (ms).
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def measured(self, seconds: Any, micros: Any) -> None:
        """Take the offset from a TIME reply."""
        self.offset_ms = int(seconds) * 1000 + int(micros) // 1000 - int(time.time() * 1000)


class Liveness:
    """Beats, presence, touching and claiming for one worker (see the module doc)."""

    def __init__(
        self,
        plumbing: TaskPlumbing,
        claimants: Sequence[Claimant],
        clock: ServerClock,
        *,
        liveness_ms: int,
        advertised: dict[str, Any],
    ) -> None:
        self._plumbing = plumbing
        self.client = plumbing.client
        self.store = plumbing.store
        self.keys = plumbing.keys
        self.task_queue = plumbing.task_queue
        self.identity = plumbing.identity
        self.liveness_ms = liveness_ms
        self._claimants = claimants
        self.clock = clock
        #: What the worker runs, in its worker-info entry (for the UI, the CLI's hints).
        self._advertised = advertised
        #: Whether `clock` has been measured (at the first beat).
        self._clock_measured = False
        #: The presence flag of the worker-info entry written last (None: not written).
        #: The entry is written again only when it changes, or when our beat was gone
        #: from the liveness zset (we were forgotten: the entry went with it).
        self._info_presence: bool | None = None
        #: The task queue's workflow and activity streams, polled by us or not.
        self._task_streams = [*plumbing.workflow_streams, *plumbing.activity_streams]
        self.presence = PresenceHolder(self.client.redis, self.keys, self.identity)
        #: Sticky names of dead workers whose streams we released (once is enough).
        self._released: set[str] = set()
        #: Random phases for the death watch (module random is the workflows' concern).
        self._jitter = random.Random()
        #: Held from a claimant's suspect_room to its adopt: the death watch and the
        #: idle claim run apart, and both could see room for one suspect, claim one
        #: each and start them together (suspects run one at a time: rd_claim_from).
        self._claiming = anyio.Lock()
        self.death_watch = DeathWatch(
            self.client.redis, self.keys, self.task_queue, self.identity, self.presence,
            fast=self.store.fast,
        )
        #: Told of each worker the death watch finds dead (the timer leases it held
        #: are taken over at once: sdk/worker/timer_leases.py).
        self.on_death: list[Callable[[str], None]] = []

    def server_ms(self) -> int:
        """Now on the server's clock (as of the last beat's measurement)."""
        return self.clock.now_ms()

    async def beat(self) -> None:
        redis = self.client.redis
        # The clock offset for the next beat is measured in this beat's round trip (a
        # round trip of its own was a quarter of an idle worker's beat): it drifts by
        # microseconds a beat, far below the milliseconds a beat's time is compared
        # with. Not the first beat's (a worker whose clock is minutes behind would look
        # long dead), nor on a cluster (its pipelines refuse a command without a key).
        piggyback = self._clock_measured and not isinstance(redis, RedisCluster)
        if not piggyback:
            # On a cluster, the clock of the master holding the beats: every worker of
            # the task queue reads the same one (a keyless TIME goes to any node).
            cluster = as_cluster(redis)
            clock = redis if cluster is None else cluster.node_client(
                self.keys.workers(self.task_queue))
            self.clock.measured(*await clock.time())
            self._clock_measured = True
        pipe = redis.pipeline(transaction=False)
        if piggyback:
            pipe.time()
        pipe.zadd(self.keys.workers(self.task_queue), {self.identity: self.server_ms()})
        write_info = self._info_presence is not self.presence.supported
        if write_info:
            self._queue_info(pipe)
        replies = await pipe.execute()
        if piggyback:
            self.clock.measured(*replies[0])
        if write_info:
            self._info_presence = self.presence.supported
        elif int(replies[1 if piggyback else 0]):
            # Our beat was new to the zset: we had been forgotten (a worker took us for
            # dead, or departed), and our info entry was dropped with the beat.
            pipe = redis.pipeline(transaction=False)
            self._queue_info(pipe)
            await pipe.execute()

    async def leave(self) -> None:
        """Take our beat and worker-info entry out (a worker that stops, or gives up
        its start-up). Best effort: an entry left behind beats no more, and is taken
        for a dead worker's and forgotten (DEPARTED_AFTER_MS)."""
        redis = self.client.redis
        try:
            await redis.zrem(self.keys.workers(self.task_queue), self.identity)
            await redis.hdel(self.keys.worker_info(self.task_queue), self.identity)
        except (RedisError, OSError):
            pass

    def _queue_info(self, pipe: Any) -> None:
        pipe.hset(
            self.keys.worker_info(self.task_queue),
            self.identity,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    **self._advertised,
                    "presence": self.presence.supported,
                }
            ),
        )

    async def beat_loop(self) -> None:
        # The beat is also how the CLI and the UI tell a live worker (one that beat within
        # LIVE_WITHIN_MS: sdk/client/registry.py); a long liveness timeout must not make
        # a live worker look gone, and its queries refused.
        interval = min(self.liveness_ms / 5, LIVE_WITHIN_MS / 3) / 1000
        next_tidy = time.monotonic() + TIDY_INTERVAL_S
        next_idle_claim = -math.inf
        while not self._plumbing.stopping:
            # Turns are counted from the beat's start: a turn every `interval` is every
            # beat (the next one starts at least a sleep of `interval` later).
            beat_at = time.monotonic()
            await self.beat()
            await self.touch_in_flight()
            if beat_at >= next_idle_claim:
                await self.claim_from_dead()
                next_idle_claim = beat_at + self.idle_claim_in(interval)
            if time.monotonic() >= next_tidy:
                await self.forget_departed_workers()
                next_tidy = time.monotonic() + TIDY_INTERVAL_S
            await anyio.sleep(interval)

    def idle_claim_in(self, beat_interval: float) -> float:
        """Seconds from this beat to this worker's next look for idle entries: the next
        beat in a fleet of up to IDLE_CLAIMERS, else its share of the fleet's looks."""
        return fleet_share(beat_interval, self.death_watch.watched + 1, IDLE_CLAIMERS,
                           self._jitter.random())

    async def death_watch_loop(self) -> None:
        """Claim the tasks of workers that died (sdk/worker/presence.py) as soon as their
        death is seen, instead of after the liveness timeout."""
        while not self._plumbing.stopping and self.death_watch.working:
            try:
                dead = await self.death_watch.find_dead()
            except RedisError as exc:
                if not self.death_watch.working:
                    log.info("presence_check_unsupported", error=str(exc))
                    return
                raise
            for worker in dead:
                for listener in self.on_death:
                    listener(worker)
                if await self.claim_all_of(worker):
                    await self.death_watch.forget(worker)
            if dead:
                # Claims not finished are resumed at the next check: do not wait a
                # fleet period for it.
                await anyio.sleep(CHECK_INTERVAL_S)
            else:
                await anyio.sleep(self.death_watch.next_check_in(self._jitter.random()))

    async def release_sticky_of(self, workers: Sequence[str]) -> None:
        """Release the sticky streams of workers that are gone (their workflow tasks go
        to the shared streams, and no more are routed to them): the sticky name is in
        their worker-info entry."""
        if not workers:
            return
        infos: Any = await self.client.redis.hmget(self.keys.worker_info(self.task_queue),
                                                   list(workers))
        for worker, info in zip(workers, infos, strict=True):
            sticky = _sticky_of(info)
            if sticky and sticky not in self._released:
                moved = await self.store.release_sticky(self.task_queue, sticky)
                self._released.add(sticky)
                log.info("dead_worker_sticky_released", dead_worker=worker, tasks=moved)

    async def claim_all_of(self, dead_worker: str) -> bool:
        """Claim the pending tasks of a dead worker that we have room for; True when
        it holds none any more."""
        await self.release_sticky_of([dead_worker])
        done = True
        polled: set[str] = set()
        for claimant in self._claimants:
            for stream in claimant.claim_streams:
                polled.add(stream)
                limit = claimant.claim_limit(stream)
                if limit is not None and limit <= 0:
                    done = False
                    continue
                # Past max_deliveries an entry goes to the dead letters (a query request
                # too): it is what kills the workers that take it.
                async with self._claiming:
                    claimed, more, suspects = await self.store.claim_from_consumer(
                        stream,
                        self._plumbing.shard_of_stream.get(stream, 0),
                        dead_worker,
                        self.identity,
                        self._plumbing.max_deliveries,
                        limit=100 if limit is None else min(limit, 100),
                        max_suspects=claimant.suspect_room(stream),
                    )
                    claimant.adopt(stream, claimed, suspects)
                if claimed:
                    log.info("dead_worker_claimed", dead_worker=dead_worker, stream=stream,
                             tasks=len(claimed), suspects=len(suspects))
                done = done and not more
        # Streams we do not poll (a worker of activities only): the dead worker stays
        # watched (not forgotten) until the workers that poll them have taken its tasks.
        unpolled = [s for s in self._task_streams if s not in polled]
        if done and unpolled:
            pipe = self.client.redis.pipeline(transaction=False)
            for stream in unpolled:
                pipe.xpending_range(stream, GROUP, "-", "+", 1, consumername=dead_worker)
            done = not any(await pipe.execute())
        return done

    async def forget_departed_workers(self) -> None:
        """Workers gone for long leave a beat in the workers zset and a consumer in each
        group: drop them, so operators see live workers only. Consumers still holding
        task entries are kept (claiming takes those); a dead consumer's pending query
        requests are dropped with it (their clients gave up long ago)."""
        redis = self.client.redis
        cutoff_ms = self.server_ms() - DEPARTED_AFTER_MS
        workers_key = self.keys.workers(self.task_queue)
        gone: Any = await redis.zrangebyscore(workers_key, "-inf", cutoff_ms)
        if gone:
            await self.release_sticky_of([w.decode() for w in gone])
            await redis.zrem(workers_key, *gone)
            await redis.hdel(self.keys.worker_info(self.task_queue), *gone)
        queries = self.keys.queries(self.task_queue)
        for stream in [*self._task_streams, queries]:
            try:
                consumers: Any = await redis.xinfo_consumers(stream, GROUP)
            except RedisError:
                continue
            for consumer in consumers:
                idle = int(consumer["idle"])  # since its last read attempt, any outcome
                if idle < DEPARTED_AFTER_MS or consumer["name"] == self.identity.encode():
                    continue
                if consumer["pending"] == 0 or stream == queries:
                    await redis.xgroup_delconsumer(stream, GROUP, consumer["name"])

    async def touch_in_flight(self) -> None:
        """Reset the idle time of every entry we hold: idle time is how others tell a
        dead worker's tasks from a live worker's long ones."""
        pipe = self.client.redis.pipeline(transaction=False)
        touched = False
        for stream, ids in self._plumbing.in_flight.items():
            if ids:
                pipe.xclaim(stream, GROUP, self.identity, 0, list(ids), justid=True)
                touched = True
        if touched:
            await pipe.execute(raise_on_error=False)

    async def claim_from_dead(self) -> None:
        """Claim the entries left idle past the liveness timeout: their worker stopped
        touching them (hung, or gone without presence). Streams with nothing pending
        are skipped, found so in one round trip: an idle worker made one claim call per
        stream every beat."""
        watched = [(c, s) for c in self._claimants if c.claims_idle for s in c.claim_streams]
        pending = await self.store.pending_counts([s for _, s in watched])
        for (claimant, stream), count in zip(watched, pending, strict=True):
            if count == 0:
                continue
            limit = claimant.claim_limit(stream)
            if limit is not None and limit <= 0:
                continue
            # Suspects one at a time here too (see rd_claim_from): a dead worker's
            # entries are claimed here when its death was not seen first (a hung one,
            # or presence slower than the liveness timeout on a starved machine), and
            # what the death watch left pending on purpose goes idle as well.
            async with self._claiming:
                claimed, suspects = await self.store.claim_stale_suspects_apart(
                    stream,
                    self._plumbing.shard_of_stream[stream],
                    self.identity,
                    self.liveness_ms,
                    self._plumbing.max_deliveries,
                    limit=limit,
                    max_suspects=claimant.suspect_room(stream),
                )
                claimant.adopt(stream, claimed, suspects)


def _sticky_of(info: bytes | None) -> str | None:
    """The sticky name in a worker-info entry (None: none, or not readable)."""
    if not info:
        return None
    try:
        sticky = json.loads(info).get("sticky")
    except (ValueError, AttributeError):
        return None
    return sticky if isinstance(sticky, str) and sticky else None
