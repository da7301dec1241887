"""Sharded pub/sub subscriptions (`SSUBSCRIBE`) to the shards' notice channels.

The engine announces a closed run and an update's stage with `SPUBLISH` on a channel of
the workflow's shard (`Keys.closed_channel`, `Keys.updates_channel`): the channel is in
the shard's hash slot, so on a cluster the message goes to the master serving that slot
(and its replicas) only, where a plain `PUBLISH` is forwarded over the cluster bus to
every node. A subscriber therefore holds one connection per master that serves one of
its channels, each with an `SSUBSCRIBE` per channel (a command spans one slot). On a
single server (or behind Sentinel) it is one connection, the same commands.

A subscription is over, and the caller subscribes again, when one of its connections is
lost, or when the server drops a channel unasked: a master that loses the channel's slot
(a slot migration, a failover that demoted it) sends `sunsubscribe`. Either way messages
may have been missed meanwhile, which the caller must make up for (re-check what it
waits for). The next `open` after a failure re-reads the cluster's slot map first, so it
subscribes where the slots are now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.cluster_redis import as_cluster, pubsub_client
from engine.reconnect import is_transient

#: How long `open` waits for the server to confirm each node's subscriptions.
CONFIRM_TIMEOUT_S = 5.0
#: Error replies that say the slot map changed (or is changing) under a subscription.
_MAP_CHANGED_REPLIES = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


class SubscriptionLostError(RedisConnectionError):
    """The server dropped a subscription (`sunsubscribe` unasked: its slot moved), or the
    connection was made again behind our back (redis-py reconnects and resubscribes
    silently): messages may have been missed. A connection error, so transient."""


def is_retryable(exc: BaseException) -> bool:
    """Whether subscribing again can fix `exc`: the server out of reach for now
    (engine/reconnect.py), or the cluster's slot map changed or is changing (MOVED from a
    master that lost the slot, a slot not covered during a failover)."""
    if is_transient(exc):
        return True
    if isinstance(exc, AskError | TryAgainError | ClusterDownError | RedisClusterException):
        return True  # (MovedError is an AskError)
    return isinstance(exc, ResponseError) and str(exc).startswith(_MAP_CHANGED_REPLIES)


class ShardSubscription:
    """`SSUBSCRIBE` to `channels`, each on the master serving its slot."""

    def __init__(self, redis: Redis, channels: Sequence[str]) -> None:
        self._redis = redis
        self._channels = list(channels)
        self._pubsubs: list[PubSub] = []
        #: The last open or run failed: the slot map may be stale, read it again.
        self._failed = False

    @property
    def connections(self) -> int:
        """Connections held now (one per master serving a channel)."""
        return len(self._pubsubs)

    async def open(self) -> None:
        """Subscribe to every channel and wait until the servers confirm each one, so
        that a message published afterwards is delivered. Raises what a server answered
        (NOPERM for an ACL without the channels, MOVED...), or a connection error."""
        await self.close()
        try:
            cluster = as_cluster(self._redis)
            if cluster is not None and self._failed:
                await cluster.nodes_manager.initialize()
            by_node: dict[int, tuple[Redis, list[str]]] = {}
            for channel in self._channels:
                client = pubsub_client(self._redis, channel)
                by_node.setdefault(id(client), (client, []))[1].append(channel)
            for client, channels in by_node.values():
                pubsub = client.pubsub()
                self._pubsubs.append(pubsub)
                for channel in channels:
                    await pubsub.ssubscribe(channel)
                await _confirmed(pubsub, len(channels))
        except BaseException:
            self._failed = True
            await self.close()
            raise
        self._failed = False

    async def run(self, deliver: Callable[[bytes], None]) -> None:
        """Hand each message's data to `deliver` until the subscription is over: raises
        why (a connection error, SubscriptionLostError). Never returns otherwise."""
        readers = [asyncio.create_task(self._read(pubsub, deliver)) for pubsub in self._pubsubs]
        if not readers:
            raise SubscriptionLostError("not subscribed")
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for reader in done:
                reader.result()
            raise SubscriptionLostError("a subscription reader ended")
        except BaseException:
            self._failed = True
            raise
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    @staticmethod
    async def _read(pubsub: PubSub, deliver: Callable[[bytes], None]) -> None:
        while True:
            message: Any = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "smessage":
                deliver(message["data"])
            elif kind in ("sunsubscribe", "ssubscribe"):
                channel = message.get("channel")
                raise SubscriptionLostError(f"shard channel {channel!r}: {kind} unasked")

    async def close(self) -> None:
        pubsubs, self._pubsubs = self._pubsubs, []
        for pubsub in pubsubs:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _confirmed(pubsub: PubSub, count: int) -> None:
    """Read the `count` confirmations of the SSUBSCRIBEs just sent (an error reply is
    raised by the read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONFIRM_TIMEOUT_S
    while count:
        left = deadline - loop.time()
        message: Any = await pubsub.get_message(timeout=max(left, 0.0)) if left > 0 else None
        if message is None:
            raise RedisTimeoutError(
                f"SSUBSCRIBE not confirmed within {CONFIRM_TIMEOUT_S:g} s")
        if message.get("type") == "ssubscribe":
            count -= 1
