"""Cluster mode on the cold path (redis-py): detecting a cluster from any node's URL,
the `RedisCluster` client that stands in for `Redis`, and plain clients to single
nodes for what RedisCluster's asyncio client does not do: sharded pub/sub
(engine/shard_pubsub.py, sdk/worker/presence.py subscribe on the node serving each
channel's slot) and a blocking read on a connection of its own (the UI's live history).

redis-py's cluster client routes each command by its key's slot (an FCALL by its first
key), splits a non-transactional pipeline by node and puts the replies back in order,
and follows MOVED/ASK. It costs about 200 us per call (docs/benchmarks.md), which is
why the hot path has its own router (engine/resp_cluster.py).
"""

from __future__ import annotations

import contextlib
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

#: Connections per node of the cold path's cluster client (it has no blocking pool:
#: past this a call fails instead of waiting).
MAX_NODE_CONNECTIONS = 1000
#: Keyword arguments of a plain client that RedisCluster does not take.
_PLAIN_ONLY = ("max_connections", "timeout", "connection_pool", "db")


async def is_cluster(url: str, **redis_kwargs: Any) -> bool:
    """Whether the server at `url` is a node of a Redis Cluster: CLUSTER INFO answers
    (a single server says cluster support is disabled). A user whose ACL does not
    grant it (engine/acl.py grants it), or a server without it, is taken for a single
    server."""
    kwargs = {k: v for k, v in redis_kwargs.items() if k not in ("max_connections", "timeout")}
    probe = Redis.from_url(url, **kwargs)
    try:
        await probe.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    except ResponseError:  # disabled, not granted, or a server without the command
        return False
    finally:
        await probe.aclose()
    return True


class ClusterRedis(RedisCluster):
    """RedisCluster that can also hand out a plain client to one node (pub/sub)."""

    source_url: str = ""
    plain_kwargs: dict[str, Any]

    async def _determine_slot(self, command: Any, *args: Any) -> int:
        # redis-py asks a node for an FCALL's keys (COMMAND GETKEYS: one more round trip
        # and server call before every cold-path FCALL); they are the `numkeys`
        # arguments after the function's name, read here as redis-py reads EVAL's.
        # Anything else, cross-slot included, goes the library's way (same errors).
        if isinstance(command, str) and command.upper() in ("FCALL", "FCALL_RO") \
                and len(args) >= 2:
            try:
                numkeys = int(args[1])
            except (TypeError, ValueError):
                numkeys = 0
            slots = {self.keyslot(key) for key in args[2: 2 + max(numkeys, 0)]}
            if len(slots) == 1:
                return slots.pop()
        return await super()._determine_slot(command, *args)

    def node_url(self, key: str | None = None) -> str:
        """The URL of the primary serving `key`'s slot (any primary when None), with
        the credentials and options of the URL this client was made from."""
        node = self.get_node_from_key(key) if key is not None else self.get_primaries()[0]
        assert node is not None
        parts = urlsplit(self.source_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{node.host}:{node.port}" if userinfo else f"{node.host}:{node.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def node_client(self, key: str | None = None) -> Redis:
        """A plain client to the primary serving `key`'s slot (any primary when None),
        closed with this client."""
        url = self.node_url(key)
        cache: dict[str, Redis] = self.__dict__.setdefault("_node_clients", {})
        client = cache.get(url)
        if client is None:
            client = cache[url] = Redis.from_url(url, **self.plain_kwargs)
        return client

    # Not in `aclose`: redis-py calls that itself to start over after repeated MOVED
    # replies (RedisCluster._execute_command, every `reinitialize_steps`), and the node
    # clients hold subscriptions that must outlive that (a worker's presence: closing
    # it there had live workers taken for dead during a slot migration). close_redis
    # closes them with the client.
    async def close_node_clients(self) -> None:
        for client in self.__dict__.pop("_node_clients", {}).values():
            with contextlib.suppress(Exception):
                await client.aclose()


def cluster_client(url: str, **redis_kwargs: Any) -> Redis:
    """The cold path's client on a cluster. Typed as `Redis`: the engine calls the
    commands both share (RedisCluster is not a subclass of it)."""
    kwargs = {k: v for k, v in redis_kwargs.items() if k not in _PLAIN_ONLY}
    client = cast(ClusterRedis, ClusterRedis.from_url(
        url, max_connections=MAX_NODE_CONNECTIONS, **kwargs))
    client.source_url = url
    client.plain_kwargs = {k: v for k, v in redis_kwargs.items() if k not in ("timeout",)}
    return cast(Redis, client)


async def close_redis(redis: Redis) -> None:
    """Close a client for good: on a cluster, its node clients too."""
    cluster = as_cluster(redis)
    if cluster is not None:
        await cluster.close_node_clients()
    await redis.aclose()


def as_cluster(redis: Any) -> ClusterRedis | None:
    """The cluster client behind `redis`, None for a plain or Sentinel client."""
    return redis if isinstance(redis, ClusterRedis) else None


def pubsub_client(redis: Redis, channel: str | None = None) -> Redis:
    """Where to subscribe: the client itself, or on a cluster a plain client to the
    node serving the channel's slot (any node for a cluster-wide PUBLISH channel)."""
    cluster = as_cluster(redis)
    return redis if cluster is None else cluster.node_client(channel)


def own_connection_client(redis: Redis, key: str) -> Redis:
    """A new client with one connection of its own to the server holding `key` (on a
    cluster, a plain client to the primary serving its slot), for a blocking read that
    may be cancelled: a cancelled read must not leave a shared connection out of step.
    The caller closes it (`aclose()`, then `connection_pool.disconnect()`)."""
    cluster = as_cluster(redis)
    if cluster is not None:
        kwargs = {k: v for k, v in cluster.plain_kwargs.items() if k != "max_connections"}
        return Redis.from_url(cluster.node_url(key), max_connections=1, **kwargs)
    pool = redis.connection_pool
    return Redis(connection_pool=ConnectionPool(
        connection_class=pool.connection_class, max_connections=1, **pool.connection_kwargs))
