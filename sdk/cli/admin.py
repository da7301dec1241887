"""`redurable load-functions`: what an admin runs once per server (and per upgrade) when
workers and clients connect as ACL users that may not run FUNCTION LOAD
(docs/security.md)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from engine.functions import LIBRARY_NAME, library_version, load_library
from sdk.cli.common import UrlOption, fail, redacted, run, stdout
from sdk.client.server_url import cli_url


def load_functions(redis_url: UrlOption = None) -> None:
    """Load this version of the engine's Redis Functions library (needs FUNCTION LOAD)."""
    target = redis_url or cli_url()

    async def body() -> None:
        try:
            redis = Redis.from_url(target, socket_connect_timeout=5)
        except ValueError as exc:
            fail(str(exc))
        try:
            await load_library(redis)
        except RedisConnectionError as exc:
            fail(f"cannot reach a server at {redacted(target)}: {exc}")
        except RedisError as exc:
            fail(f"server at {redacted(target)} refused: {exc}")
        finally:
            await redis.aclose()

    run(body)
    stdout.print(f"function library {LIBRARY_NAME!r} version {library_version()} is loaded")
