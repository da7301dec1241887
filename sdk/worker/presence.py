"""Telling a dead worker from a slow one in well under a second.

A heartbeat alone can only say "silent for longer than the liveness timeout", so a
worker killed with SIGKILL would hold its tasks for that long. But when a process dies
its kernel closes its sockets and the Redis server drops its connections at once. Each
worker therefore keeps one pub/sub subscription on its own presence channel for as long
as it runs, and the others ask `PUBSUB NUMSUB` for the channels of the workers in the
task queue's liveness zset: a worker that advertises presence and has no subscriber on
two checks in a row has died, and its pending tasks can be claimed without waiting for
them to go idle.

The heartbeat stays as the fallback for what presence cannot see: a hung process whose
sockets stay open, a host that vanished without closing its connections, and workers
that do not advertise presence.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from typing import Any

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from engine.cluster_redis import as_cluster, pubsub_client
from engine.keys import Keys
from engine.resp import RespPool
from engine.resp_cluster import ClusterRespPool
from engine.shard_pubsub import SubscriptionLostError, is_retryable
from sdk.worker.fleet import fleet_share

log = structlog.get_logger("redurable.worker")

#: How often the task queue's live workers, together, look for dead ones: each of K
#: workers checks every CHECK_INTERVAL_S * K / WATCHERS (at random phases), so the
#: fleet checks about WATCHERS times per interval whatever its size, and each worker's
#: idle cost falls as the fleet grows instead of every worker asking about every other.
CHECK_INTERVAL_S = 0.1
WATCHERS = 2
#: How often a worker with nobody to watch (alone in its task queue, or among workers
#: without presence) looks for newcomers, on average (at random phases, 0.5 to 1.5
#: times this): only a newcomer that dies before it is seen is claimed later for it
#: (seen within 0.75 s, confirmed DEAD_AFTER_S after), and a lone worker's ten checks
#: a second were most of its idle commands.
LONE_CHECK_S = 0.5
#: A worker's channel must stay without a subscriber this long (over two checks at
#: least) before it counts as dead: a live worker whose pub/sub connection dropped
#: subscribes again at once.
DEAD_AFTER_S = 0.2
#: Pause before subscribing again after the presence connection failed.
RESUBSCRIBE_PAUSE_S = 0.05
#: After this worker's own view went wrong (its presence subscription or a check was
#: lost: a server restart, a failover, a network blip drops everyone's subscriptions
#: at once), nobody is declared dead for this long: the others subscribe again first.
REGAIN_GRACE_S = 1.0
#: The longest the holder waits on its subscription without a look around: a request
#: to subscribe again wakes it at once (and a dropped connection raises at once), so
#: this only bounds a wait nothing should need. It used to be 0.25 s, four wake-ups a
#: second through redis-py in every idle worker.
HOLD_POLL_S = 5.0
#: Subscriptions tried in a row when the reply says the channel's slot moved (MOVED).
MOVED_ATTEMPTS = 3


class PresenceHolder:
    """Holds this worker's presence subscription, re-subscribing if it drops."""

    def __init__(self, redis: Redis, keys: Keys, worker_id: str) -> None:
        self._redis = redis
        self._channel = keys.worker_presence(worker_id)
        self._pubsub: Any = None
        self.supported = True
        #: When (monotonic) the subscription was last lost or found missing.
        self.lost_at = -math.inf
        self._resubscribe = False
        #: The holder's wait on its subscription, cancelled by request_resubscribe.
        self._waiting: anyio.CancelScope | None = None
        #: The channel's slot may have moved (MOVED, `sunsubscribe`, no subscriber seen):
        #: the cluster client's slot map is read again before the next subscription.
        self._stale_map = False

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def subscribed(self) -> bool:
        """Whether a subscription is held now (its connection open)."""
        return self._pubsub is not None

    def request_resubscribe(self) -> None:
        """The server shows no subscriber on our channel although we hold one (cut on the
        server's side only): subscribe again on a fresh connection."""
        self.lost_at = time.monotonic()
        self._resubscribe = True
        self._stale_map = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def subscribe(self) -> None:
        """Subscribe before the first heartbeat, so no one sees us beating without it.
        A MOVED (or ASK, TRYAGAIN, CLUSTERDOWN) reply is tried again on a fresh slot map
        a few times, then raised (`hold` goes on trying)."""
        for attempt in range(MOVED_ATTEMPTS):
            try:
                await self._subscribe_once()
                return
            except ResponseError:
                if attempt == MOVED_ATTEMPTS - 1:
                    raise
                await anyio.sleep(RESUBSCRIBE_PAUSE_S)

    async def _subscribe_once(self) -> None:
        await self._close()
        cluster = as_cluster(self._redis)
        if cluster is not None and self._stale_map:
            await cluster.nodes_manager.initialize()
            self._stale_map = False
        # On a cluster, a sharded subscription on the node that serves the channel's
        # slot, where `PUBSUB SHARDNUMSUB` (DeathWatch) counts it.
        self._pubsub = pubsub_client(self._redis, self._channel).pubsub()
        try:
            if cluster is not None:
                await self._pubsub.ssubscribe(self._channel)
            else:
                await self._pubsub.subscribe(self._channel)
            # Its reply (or NOPERM: an ACL without the channel) is read only with the
            # next message: read it now, before the first beat advertises presence.
            await self._pubsub.get_message(timeout=5.0)
        except ResponseError as exc:
            if is_retryable(exc):
                # MOVED and the like: the slot moved, not "no pub/sub here". `hold`
                # subscribes again, on the slot's master by a fresh slot map.
                self._stale_map = True
                await self._close()
                raise
            # A server or ACL without pub/sub: live by the heartbeat alone. (Not a
            # connection error: Redis away for a moment is no reason to give up presence,
            # and `hold` subscribes again.)
            log.warning("presence_unavailable", error=str(exc))
            self.supported = False
            await self._close()

    async def hold(self) -> None:
        """Keep the subscription open until cancelled (nothing is ever published)."""
        try:
            while self.supported:
                try:
                    if self._pubsub is None or self._resubscribe:
                        self._resubscribe = False
                        await self.subscribe()
                        continue
                    # Cancelled by request_resubscribe: the connection is dropped
                    # (subscribe() closes it), so a read cut short leaves nothing behind.
                    message = None
                    try:
                        with anyio.CancelScope() as self._waiting:
                            message = await self._pubsub.get_message(timeout=HOLD_POLL_S)
                    finally:
                        self._waiting = None
                    if isinstance(message, dict) and message.get("type") == "sunsubscribe":
                        # Dropped by the server: the channel's slot moved away.
                        raise SubscriptionLostError(f"{self._channel}: sunsubscribe unasked")
                except (RedisError, OSError) as exc:
                    log.warning("presence_lost", error=str(exc))
                    self.lost_at = time.monotonic()
                    self._stale_map = True
                    await self._close()
                    await anyio.sleep(RESUBSCRIBE_PAUSE_S)
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    async def close(self) -> None:
        """Drop the subscription (a start-up given up: `hold` never ran to close it)."""
        await self._close()

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class DeathWatch:
    """Finds workers of one task queue whose presence subscription is gone."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        task_queue: str,
        worker_id: str,
        holder: PresenceHolder | None = None,
        fast: RespPool | None = None,
    ) -> None:
        self._redis = redis
        #: The engine's lean client, when there is one: a check ran ten times a second
        #: in every worker, and through redis-py it was most of an idle worker's CPU.
        self._fast = fast
        #: This worker's own subscription: while it is in doubt, so is our view of others.
        self._holder = holder
        self._quiet_until = -math.inf
        self._keys = keys
        self._task_queue = task_queue
        self._me = worker_id
        #: worker id -> whether it advertises presence (from its worker-info entry).
        self._advertises: dict[str, bool] = {}
        #: worker id -> when (monotonic) its channel was first seen without subscriber.
        self._silent_since: dict[str, float] = {}
        #: Workers with presence seen by the last check (this one not counted).
        self.watched = 0
        self.working = True

    def next_check_in(self, jitter: float) -> float:
        """Seconds until this worker's next check (`jitter` uniform in [0, 1)): the
        fleet's share (CHECK_INTERVAL_S * fleet size / WATCHERS, spread at random so
        that the workers' checks interleave), LONE_CHECK_S with nobody to watch, or
        DEAD_AFTER_S after a silent channel was first seen, to confirm that death at
        once rather than a fleet period later."""
        if self._silent_since:
            first = min(self._silent_since.values())
            return max(0.01, first + DEAD_AFTER_S - time.monotonic())
        if not self.watched:
            return LONE_CHECK_S * (0.5 + jitter)
        return fleet_share(CHECK_INTERVAL_S, self.watched + 1, WATCHERS, jitter,
                           spread_alone=True)

    async def find_dead(self) -> list[str]:
        """Workers that died since they last beat. Each is reported on every check until
        it leaves the liveness zset (`forget`), so a claim that could not take all of its
        tasks at once is resumed."""
        if not self.working:
            return []
        redis = self._redis
        try:
            members = await self._members()
            others = [m.decode() for m in members if m.decode() != self._me]
            unknown = [w for w in others if w not in self._advertises]
            if unknown:
                infos: Any = await redis.hmget(self._keys.worker_info(self._task_queue), unknown)
                for worker, info in zip(unknown, infos, strict=True):
                    self._advertises[worker] = _advertises_presence(info)
            watched = [w for w in others if self._advertises.get(w)]
            self.watched = len(watched)
            if not watched:
                return []
            own = [self._holder.channel] if self._holder and self._holder.supported else []
            counts = await self._subscribers(
                [*own, *[self._keys.worker_presence(w) for w in watched]]
            )
        except RedisError as exc:
            refused = isinstance(exc, NoPermissionError) or str(exc).startswith("NOPERM")
            if "unknown command" in str(exc).lower() or refused:
                # A server (or an ACL) without PUBSUB NUMSUB: heartbeat only
                self.working = False
            self._quiet_until = time.monotonic() + REGAIN_GRACE_S
            raise
        now = time.monotonic()
        if own:
            own_count, counts = counts[0], counts[1:]
            if self._holder is not None and own_count == 0:
                self._holder.request_resubscribe()
        if self._holder is not None:
            self._quiet_until = max(self._quiet_until, self._holder.lost_at + REGAIN_GRACE_S)
        if now < self._quiet_until:
            self._silent_since.clear()
            return []
        dead = []
        for worker, subscribers in zip(watched, counts, strict=True):
            if subscribers > 0:
                self._silent_since.pop(worker, None)
                continue
            since = self._silent_since.setdefault(worker, now)
            if now - since >= DEAD_AFTER_S:
                dead.append(worker)
        if dead:
            # Read again: a worker may have given presence up since (its flag was read
            # once), and a silent channel then says nothing about its death.
            infos = await redis.hmget(self._keys.worker_info(self._task_queue), dead)
            for worker, info in zip(dead, infos, strict=True):
                self._advertises[worker] = _advertises_presence(info)
            dead = [w for w in dead if self._advertises[w]]
        # Only channels still watched wait for confirmation (next_check_in): a worker
        # that gave presence up, or left, is not confirmed dead by its silence.
        for worker in [w for w in self._silent_since if not self._advertises.get(w)]:
            self._silent_since.pop(worker, None)
        for worker in set(self._advertises) - set(others):
            self._advertises.pop(worker, None)
            self._silent_since.pop(worker, None)
        return dead

    async def _members(self) -> list[bytes]:
        key = self._keys.workers(self._task_queue)
        if self._fast is not None:
            raw: Any = await self._fast.execute("ZRANGE", key, 0, -1)
        else:
            raw = await self._redis.zrange(key, 0, -1)
        return list(raw)

    async def _subscribers(self, channels: list[str]) -> list[int]:
        """PUBSUB NUMSUB: the subscriber count of each channel, in order. On a cluster
        `PUBSUB SHARDNUMSUB`, one per channel, each on the node serving its slot (NUMSUB
        counts one node's subscribers only: live workers looked dead)."""
        if isinstance(self._fast, ClusterRespPool):
            replies: Any = await self._fast.execute_many(
                [("PUBSUB", "SHARDNUMSUB", channel) for channel in channels])
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [int(reply[1]) for reply in replies]
        if self._fast is not None:
            flat: Any = await self._fast.execute("PUBSUB", "NUMSUB", *channels)
            return [int(n) for n in flat[1::2]]
        pairs: Any = await self._redis.pubsub_numsub(*channels)
        return [int(n) for _, n in pairs]

    async def forget(self, worker: str) -> None:
        """Drop a dead worker whose tasks are all claimed from the liveness zset (and its
        info), so operators and other workers stop seeing it."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self._keys.workers(self._task_queue), worker)
        pipe.hdel(self._keys.worker_info(self._task_queue), worker)
        await pipe.execute()
        self._advertises.pop(worker, None)
        self._silent_since.pop(worker, None)
        log.info("dead_worker_forgotten", dead_worker=worker)


def _advertises_presence(info: bytes | None) -> bool:
    if not info:
        return False
    try:
        return bool(json.loads(info).get("presence"))
    except (ValueError, AttributeError):
        return False
