"""Redis Sentinel: `redis+sentinel://host:port[,host:port...]/service[/db]` names a
primary by the service name its Sentinels monitor, not by its address, so a client
follows it across a failover (DESIGN.md "Deployments").

Both of the engine's paths to Redis ask the Sentinels where the primary is whenever
they open a connection, and open a new one when the old one is lost or answers
READONLY (a primary demoted to a replica):

- redis-py: `redis.asyncio.sentinel`'s managed connections, in a blocking pool
  (`sentinel_redis`) like the one `Client.connect` uses for a plain URL;
- engine/resp.py: `RespPool.from_url` gets `primary_address` as its resolver, and
  checks with ROLE that the server it reached is the primary.

Credentials in the URL are the data nodes' (AUTH after connecting to the primary); the
Sentinels are asked without them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from engine.errors import InvalidArgumentError

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
#: Seconds to wait for one Sentinel's answer before asking the next.
SENTINEL_TIMEOUT = 1.0


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SCHEME


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """`redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`."""
        if not is_sentinel_url(url):
            raise InvalidArgumentError(f"not a {SCHEME}:// URL: {url.split('://', 1)[0]!r}")
        rest = url.split("://", 1)[1]
        netloc, _, path = rest.partition("/")
        path = path.split("?", 1)[0]
        userinfo, _, hosts = netloc.rpartition("@")
        username = password = None
        if userinfo:
            user, _, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if secret else None
        sentinels = []
        for part in hosts.split(","):
            parsed = urlparse(f"//{part}")
            if not parsed.hostname:
                raise InvalidArgumentError(f"{SCHEME} URL: no host in {part!r}")
            try:
                port = parsed.port or DEFAULT_SENTINEL_PORT
            except ValueError:
                raise InvalidArgumentError(f"{SCHEME} URL: bad port in {part!r}") from None
            sentinels.append((parsed.hostname, port))
        service, _, db = path.partition("/")
        if not service:
            raise InvalidArgumentError(
                f"{SCHEME} URL names no service: {SCHEME}://host:port/service_name")
        if db and not db.isdigit():
            raise InvalidArgumentError(f"{SCHEME} URL: database must be a number, not {db!r}")
        return cls(tuple(sentinels), unquote(service), int(db or 0), username, password)


async def _ask(host: str, port: int, *command: str) -> Any:
    """One command to one Sentinel on a connection of its own."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(hiredis.pack_command(tuple(command)))  # type: ignore[arg-type]
        parser = hiredis.Reader(replyError=ResponseError)
        while (reply := parser.gets()) is False:
            chunk = await reader.read(1 << 16)
            if not chunk:
                raise RedisConnectionError("connection closed by the Sentinel")
            parser.feed(chunk)
        return reply
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def primary_address(url: SentinelUrl) -> tuple[str, int]:
    """Where the Sentinels say the primary of `url.service` is: the first Sentinel that
    answers with an address wins. RedisConnectionError when none does (all down, or
    none knows the service), which callers treat as "out of reach for now"."""
    errors: list[str] = []
    for host, port in url.sentinels:
        try:
            async with asyncio.timeout(SENTINEL_TIMEOUT):
                reply = await _ask(host, port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", url.service)
        except (OSError, RedisConnectionError, ResponseError, TimeoutError) as exc:
            errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
            continue
        if reply:
            return reply[0].decode(), int(reply[1])
        errors.append(f"{host}:{port}: does not monitor {url.service!r}")
    raise RedisConnectionError(
        f"no Sentinel gave the primary of {url.service!r} ({'; '.join(errors)})")


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel-managed connections in a blocking pool: a burst of calls
    waits for a connection (as Client.connect's pool for a plain URL does); closing it
    closes the connections to the Sentinels too."""

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


def sentinel_redis(url: SentinelUrl, **redis_kwargs: Any) -> Redis:
    """A redis-py client for the primary of `url.service`, wherever it moves."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT,
                         "socket_connect_timeout": SENTINEL_TIMEOUT},
    )
    redis: Redis = sentinel.master_for(
        url.service,
        redis_class=Redis,
        connection_pool_class=BlockingSentinelPool,
        db=url.db,
        username=url.username,
        password=url.password,
        **redis_kwargs,
    )
    return redis
