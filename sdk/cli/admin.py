"""`redurable load-functions`: what an admin runs once per server (and per upgrade) when
workers and clients connect as ACL users that may not run FUNCTION LOAD
(docs/security.md)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from engine.cluster_redis import cluster_client, is_cluster
from engine.functions import LIBRARY_NAME, library_version, load_library
from engine.sentinel import SentinelUrl, is_sentinel_url, sentinel_redis
from sdk.cli.common import UrlOption, fail, redacted, run, stdout
from sdk.client.server_url import cli_url


def load_functions(redis_url: UrlOption = None) -> None:
    """Load this version of the engine's Redis Functions library (needs FUNCTION LOAD)."""
    target = redis_url or cli_url()

    async def body() -> None:
        try:
            if is_sentinel_url(target):
                redis = sentinel_redis(SentinelUrl.parse(target), socket_connect_timeout=5)
            else:
                redis = Redis.from_url(target, socket_connect_timeout=5)
        except ValueError as exc:
            fail(str(exc))
        try:
            if not is_sentinel_url(target) and await is_cluster(target,
                                                                socket_connect_timeout=5):
                # Every primary runs the calls of its slots: load it on each.
                await redis.aclose()
                redis = cluster_client(target, socket_connect_timeout=5)
            await load_library(redis)
        except RedisConnectionError as exc:
            fail(f"cannot reach a server at {redacted(target)}: {exc}")
        except RedisError as exc:
            fail(f"server at {redacted(target)} refused: {exc}")
        finally:
            await redis.aclose()

    run(body)
    stdout.print(f"function library {LIBRARY_NAME!r} version {library_version()} is loaded")
