"""A worker's standing in its task queue: its heartbeat and presence subscription, the
touch that keeps its in-flight tasks from being claimed, and the claiming of the tasks
of workers that died (docs/recovery.md). The worker decides what to do with what is
claimed (`adopt`) and how much it has room for (`claim_limit`)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from redis.exceptions import RedisError

from engine.keys import GROUP
from engine.store import Store
from sdk.client.client import Client
from sdk.worker.presence import CHECK_INTERVAL_S, DeathWatch, PresenceHolder

log = structlog.get_logger("redurable.worker")
Fields = dict[bytes, bytes]
#: Workers and consumers silent this long are forgotten (checked every TIDY_INTERVAL_S).
DEPARTED_AFTER_MS = 10 * 60 * 1000
TIDY_INTERVAL_S = 60.0


class Liveness:
    """Beats, presence, touching and claiming for one worker (see the module doc)."""

    def __init__(
        self,
        client: Client,
        task_queue: str,
        identity: str,
        *,
        liveness_ms: int,
        max_deliveries: int,
        all_streams: list[str],
        claimable_streams: list[str],
        query_stream: str | None,
        shard_of_stream: dict[str, int],
        in_flight: dict[str, set[str]],
        worker_info: Callable[[], dict[str, Any]],
        claim_limit: Callable[[str], int | None],
        adopt: Callable[[str, list[tuple[bytes, Fields]], set[bytes]], None],
        suspect_room: Callable[[str], int | None],
        stopping: Callable[[], bool],
    ) -> None:
        self.client = client
        self.store: Store = client.store
        self.keys = client.keys
        self.task_queue = task_queue
        self.identity = identity
        self.liveness_ms = liveness_ms
        self.max_deliveries = max_deliveries
        #: The task queue's workflow and activity streams, and those this worker polls.
        self._all_streams = all_streams
        self._claimable = claimable_streams
        #: The task queue's query requests, when this worker answers them: a dead
        #: worker's unanswered ones are taken over too (claimed by presence only: a
        #: request is answered at once or not at all, it never goes idle while alive).
        self._query_stream = query_stream
        self._shard_of_stream = shard_of_stream
        #: The worker's in-flight entries by stream (shared, not copied).
        self._in_flight = in_flight
        self._worker_info = worker_info
        self._claim_limit = claim_limit
        self._adopt = adopt
        #: How many suspects (tasks delivered more than once) the worker can take from a
        #: dead one on this stream now; None: no limit (rd_claim_from).
        self._suspect_room = suspect_room
        self._stopping = stopping
        self.presence = PresenceHolder(client.redis, self.keys, identity)
        self.death_watch = DeathWatch(client.redis, self.keys, task_queue, identity, self.presence)
        #: Server clock minus ours (ms), measured at every beat: times that other
        #: processes compare (beats, query deadlines) are on the server's clock, so a
        #: worker whose clock is minutes off is neither "dead" nor dropping queries.
        self._clock_offset_ms = 0

    def server_ms(self) -> int:
        """Now on the server's clock (as of the last beat's measurement)."""
        return int(time.time() * 1000) + self._clock_offset_ms

    async def beat(self) -> None:
        redis = self.client.redis
        seconds, micros = await redis.time()
        self._clock_offset_ms = int(seconds) * 1000 + int(micros) // 1000 - int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        pipe.zadd(self.keys.workers(self.task_queue), {self.identity: self.server_ms()})
        pipe.hset(
            self.keys.worker_info(self.task_queue),
            self.identity,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    **self._worker_info(),
                    "presence": self.presence.supported,
                }
            ),
        )
        await pipe.execute()

    async def beat_loop(self) -> None:
        interval = self.liveness_ms / 5000
        next_tidy = time.monotonic() + TIDY_INTERVAL_S
        while not self._stopping():
            await self.beat()
            await self.touch_in_flight()
            await self.claim_from_dead()
            if time.monotonic() >= next_tidy:
                await self.forget_departed_workers()
                next_tidy = time.monotonic() + TIDY_INTERVAL_S
            await anyio.sleep(interval)

    async def death_watch_loop(self) -> None:
        """Claim the tasks of workers that died (sdk/worker/presence.py) as soon as their
        death is seen, instead of after the liveness timeout."""
        while not self._stopping() and self.death_watch.working:
            try:
                dead = await self.death_watch.find_dead()
            except RedisError as exc:
                if not self.death_watch.working:
                    log.info("presence_check_unsupported", error=str(exc))
                    return
                raise
            for worker in dead:
                if await self.claim_all_of(worker):
                    await self.death_watch.forget(worker)
            await anyio.sleep(CHECK_INTERVAL_S)

    async def claim_all_of(self, dead_worker: str) -> bool:
        """Claim the pending tasks of a dead worker that we have room for; True when
        it holds none any more."""
        done = True
        for stream in self._claimable:
            limit = self._claim_limit(stream)
            if limit is not None and limit <= 0:
                done = False
                continue
            claimed, more, suspects = await self.store.claim_from_consumer(
                stream,
                self._shard_of_stream[stream],
                dead_worker,
                self.identity,
                self.max_deliveries,
                limit=100 if limit is None else min(limit, 100),
                max_suspects=self._suspect_room(stream),
            )
            if claimed:
                log.info("dead_worker_claimed", dead_worker=dead_worker, stream=stream,
                         tasks=len(claimed), suspects=len(suspects))
            self._adopt(stream, claimed, suspects)
            done = done and not more
        if self._query_stream is not None:
            # Dead-lettered past max_deliveries like tasks (a query that kills workers).
            claimed, _, _ = await self.store.claim_from_consumer(
                self._query_stream, 0, dead_worker, self.identity, self.max_deliveries
            )
            self._adopt(self._query_stream, claimed, set())
        # Streams we do not poll (a worker of activities only): the dead worker stays
        # watched (not forgotten) until the workers that poll them have taken its tasks.
        unpolled = [s for s in self._all_streams if s not in self._claimable]
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
            await redis.zrem(workers_key, *gone)
            await redis.hdel(self.keys.worker_info(self.task_queue), *gone)
        queries = self.keys.queries(self.task_queue)
        for stream in [*self._all_streams, queries]:
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
        for stream, ids in self._in_flight.items():
            if ids:
                pipe.xclaim(stream, GROUP, self.identity, 0, list(ids), justid=True)
                touched = True
        if touched:
            await pipe.execute(raise_on_error=False)

    async def claim_from_dead(self) -> None:
        for stream in self._claimable:
            limit = self._claim_limit(stream)
            if limit is not None and limit <= 0:
                continue
            claimed = await self.store.claim_stale(
                stream,
                self._shard_of_stream[stream],
                self.identity,
                self.liveness_ms,
                self.max_deliveries,
                limit=limit,
            )
            self._adopt(stream, claimed, set())
