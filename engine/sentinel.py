"""Redis Sentinel: `redis+sentinel://host:port[,host:port...]/service[/db]` names a
primary by the service name its Sentinels monitor, not by its address, so a client
follows it across a failover (DESIGN.md "Deployments"). `rediss+sentinel://` is the
same over TLS, to the Sentinels and to the data nodes alike (a deployment that turns on
TLS serves it on both), with the `ssl_*` query options of a `rediss://` URL
(engine/tls.py): `rediss+sentinel://host:26379/service?ssl_ca_certs=ca.pem`.

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
import functools
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from engine.errors import InvalidArgumentError
from engine.tls import TRUE, ssl_context_from_query

SCHEME = "redis+sentinel"
TLS_SCHEME = "rediss+sentinel"
#: The query options of a TLS URL, as redis-py's connection keywords take them.
_SSL_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                "ssl_check_hostname")
DEFAULT_SENTINEL_PORT = 26379
#: Seconds to wait for one Sentinel's answer before asking the next.
SENTINEL_TIMEOUT = 1.0


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in (SCHEME, TLS_SCHEME)


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    """`rediss+sentinel://`: every connection, to a Sentinel or a data node, is TLS."""
    ssl_options: tuple[tuple[str, str], ...] = ()
    """The URL's `ssl_*` query options (the last of each), for a TLS URL."""

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """`redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`, or
        `rediss+sentinel://...[?ssl_ca_certs=...&ssl_certfile=...]` for TLS."""
        if not is_sentinel_url(url):
            raise InvalidArgumentError(f"not a {SCHEME}:// URL: {url.split('://', 1)[0]!r}")
        scheme, rest = url.split("://", 1)
        tls = scheme.lower() == TLS_SCHEME
        netloc, _, path = rest.partition("/")
        path, _, query_text = path.partition("?")
        query = parse_qs(query_text)
        if tls:
            ssl_context_from_query(query)  # a bad option fails here, not at connect
        ssl_options = tuple(
            (name, query[name][-1]) for name in _SSL_OPTIONS if name in query) if tls else ()
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
        return cls(tuple(sentinels), unquote(service), int(db or 0), username, password,
                   tls, ssl_options)

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The context of every connection for a TLS URL (engine/resp.py's and the
        Sentinel queries'), None for a plain one."""
        if not self.tls:
            return None
        return ssl_context_from_query({k: [v] for k, v in self.ssl_options})

    def redis_py_ssl(self) -> dict[str, Any]:
        """The same options as redis-py's connection keywords (none for a plain URL)."""
        if not self.tls:
            return {}
        options: dict[str, Any] = dict(self.ssl_options)
        if "ssl_check_hostname" in options:
            options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in TRUE
        return {"ssl": True, **options}


async def _ask(host: str, port: int, *command: str, context: ssl.SSLContext | None = None) -> Any:
    """One command to one Sentinel on a connection of its own (TLS with `context`)."""
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
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
                reply = await _ask(host, port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                   url.service, context=url.ssl_context)
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
    tls = url.redis_py_ssl()
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT,
                         "socket_connect_timeout": SENTINEL_TIMEOUT, **tls},
    )
    redis: Redis = sentinel.master_for(
        url.service,
        redis_class=Redis,
        connection_pool_class=BlockingSentinelPool,
        db=url.db,
        username=url.username,
        password=url.password,
        **tls,
        **redis_kwargs,
    )
    return redis
