"""Loading the Redis Functions library: the key helpers generated from engine/keys.py,
then engine/lua/*.lua concatenated in name order."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from engine.cluster_redis import as_cluster
from engine.errors import RedurableError
from engine.keys import lua_key_helpers

LIBRARY_NAME = "redurable"
#: A read-only function that returns the library's version (a hash of its source), so
#: a client can tell whether the server already has the code it was built with.
VERSION_FUNCTION = "rd_library_version"


class LibraryMissingError(RedurableError):
    """The server lacks this version of the library and this user may not load it."""


@functools.cache
def _lua_files() -> str:
    folder = resources.files("engine").joinpath("lua")
    parts = ["-- ===== engine/keys.py =====\n", lua_key_helpers()]
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".lua"):
            parts.append(f"-- ===== {entry.name} =====\n")
            parts.append(entry.read_text())
    return "\n".join(parts)


def library_version() -> str:
    return hashlib.sha256(_lua_files().encode()).hexdigest()[:16]


def library_source() -> str:
    """The library as FUNCTION LOAD takes it: one chunk, key and common helpers first,
    and the version function last."""
    return "\n".join(
        [
            f"#!lua name={LIBRARY_NAME}\n",
            _lua_files(),
            f"redis.register_function{{function_name='{VERSION_FUNCTION}', "
            f"callback=function() return '{library_version()}' end, flags={{'no-writes'}}}}\n",
        ]
    )


async def installed_version(redis: Redis) -> str | None:
    """Version of the library on the server, None when there is none (or an old one
    without the version function)."""
    try:
        version = await redis.fcall_ro(VERSION_FUNCTION, 0)
    except ResponseError as exc:
        if "function not found" in str(exc).lower():
            return None
        raise
    return version.decode() if isinstance(version, bytes) else str(version)


async def load_library(redis: Redis) -> None:
    """Make sure the server runs this version of the library: loaded (or replaced) only
    when it is missing or different, so a user without FUNCTION LOAD permission (an
    ACL user limited to its namespace, docs/security.md) can connect once an admin has
    loaded it. On a cluster: on every primary (each runs the calls of its slots; a
    primary added later gets it from the hot path, engine/resp_cluster.py)."""
    cluster = as_cluster(redis)
    if cluster is None:
        await _load_on(lambda: installed_version(redis),
                       lambda: redis.function_load(library_source(), replace=True))
        return
    await cluster.initialize()
    for node in cluster.get_primaries():
        run = functools.partial(cluster.execute_command, target_nodes=node)
        await _load_on(functools.partial(_node_version, run),
                       functools.partial(run, "FUNCTION", "LOAD", "REPLACE", library_source()))


async def _node_version(run: Callable[..., Awaitable[Any]]) -> str | None:
    try:
        version = await run("FCALL_RO", VERSION_FUNCTION, 0)
    except ResponseError as exc:
        if "function not found" in str(exc).lower():
            return None
        raise
    return version.decode() if isinstance(version, bytes) else str(version)


async def _load_on(
    version: Callable[[], Awaitable[str | None]], load: Callable[[], Awaitable[Any]]
) -> None:
    if await version() == library_version():
        return
    try:
        await load()
    except NoPermissionError:
        raise LibraryMissingError(
            f"the server does not have version {library_version()} of the redurable "
            "function library and this user may not load it (FUNCTION LOAD); load it "
            "once as an admin: redurable load-functions --redis-url <admin URL> "
            "(docs/security.md)"
        ) from None
