"""Loading the Redis Functions library (built by engine/library.py) and removing the
versions nobody uses any more.

Loading only ever adds this version's library (`redurable_<version>`) when the server
lacks it; it never replaces or deletes another version, which older or newer processes
of a rolling deploy may be calling. Old versions go with an admin's explicit prune
(`redurable load-functions --prune`), which keeps every version a connected process
uses: each process names its connections after its library (CLIENT SETNAME
`redurable_<version>`, see `connection_name`), so CLIENT LIST tells which versions are
in use (docs/design-notes.md "Side-by-side library versions").
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from engine.cluster_redis import as_cluster
from engine.errors import RedurableError
from engine.library import (
    LEGACY_LIBRARY,
    LIBRARY_PREFIX,
    VERSION_FUNCTION,
    function_name,
    library_name,
    library_source,
    library_version,
    version_of_library,
)

__all__ = [
    "LEGACY_LIBRARY",
    "VERSION_FUNCTION",
    "LibraryMissingError",
    "PruneReport",
    "connection_name",
    "function_name",
    "is_loaded",
    "library_name",
    "library_source",
    "library_version",
    "load_library",
    "loaded_versions",
    "missing_function",
    "prune_libraries",
]

Run = Callable[..., Awaitable[Any]]


class LibraryMissingError(RedurableError):
    """The server lacks this version of the library and this user may not load it."""


def connection_name() -> str:
    """What every connection of this process is named (CLIENT SETNAME): its library's
    name, so that CLIENT LIST shows which library versions live processes call."""
    return library_name()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def missing_function(reply: Any) -> bool:
    """Whether a reply is the error of an FCALL of a function the server lacks."""
    return isinstance(reply, ResponseError) and "function not found" in str(reply).lower()


async def _has_version(run: Run) -> bool:
    try:
        version = await run("FCALL_RO", function_name(VERSION_FUNCTION), 0)
    except ResponseError as exc:
        if missing_function(exc):
            return False
        raise
    return _text(version) == library_version()


async def is_loaded(redis: Redis) -> bool:
    """Whether the server (a single server or Sentinel's primary) has this version."""
    return await _has_version(redis.execute_command)


def _primaries(redis: Redis) -> list[Run]:
    """One command runner per primary: the server itself, or each primary of a cluster
    (each runs the calls of its slots)."""
    cluster = as_cluster(redis)
    if cluster is None:
        return [redis.execute_command]
    return [functools.partial(cluster.execute_command, target_nodes=node)
            for node in cluster.get_primaries()]


async def load_on(run: Run) -> bool:
    """Add this version's library to one server unless it has it; True when loaded now.
    Without REPLACE: a library of the same name has the same source (the name carries
    the hash of it), so "already exists" (another process loaded it first) is done."""
    try:
        await run("FUNCTION", "LOAD", library_source())
    except ResponseError as exc:
        if "already exists" in str(exc).lower():
            return False
        raise
    return True


async def load_library(redis: Redis) -> None:
    """Make sure the server has this version of the library, added only when missing,
    so a user without FUNCTION LOAD permission (an ACL user limited to its namespace,
    docs/security.md) can connect once an admin has loaded it. On a cluster: on every
    primary (a primary added later gets it from the hot path, engine/resp_cluster.py)."""
    cluster = as_cluster(redis)
    if cluster is not None:
        await cluster.initialize()
    for run in _primaries(redis):
        if await _has_version(run):
            continue
        try:
            await load_on(run)
        except NoPermissionError:
            raise LibraryMissingError(
                f"the server does not have version {library_version()} of the redurable "
                "function library and this user may not load it (FUNCTION LOAD); load it "
                "once as an admin: redurable load-functions --redis-url <admin URL> "
                "(docs/security.md)"
            ) from None


# --- listing and pruning (an admin's step) ---------------------------------------------
def _fields(entry: Any) -> dict[str, Any]:
    """One FUNCTION LIST entry (a flat RESP2 list or a RESP3 map) as a dict."""
    if isinstance(entry, dict):
        return {_text(k): v for k, v in entry.items()}
    return {_text(k): v for k, v in zip(entry[0::2], entry[1::2], strict=True)}


async def _library_versions(run: Run) -> set[str]:
    reply = await run("FUNCTION", "LIST", "LIBRARYNAME", f"{LEGACY_LIBRARY}*")
    names = (_text(_fields(entry).get("library_name", b"")) for entry in reply or [])
    return {v for v in map(version_of_library, names) if v is not None}


async def loaded_versions(redis: Redis) -> set[str]:
    """The redurable library versions on the server (on any primary of a cluster)."""
    found: set[str] = set()
    for run in _primaries(redis):
        found |= await _library_versions(run)
    return found


def _client_names(reply: Any) -> Iterable[str]:
    """The `name` of each connection in a CLIENT LIST reply (redis-py parses it into
    dicts; raw, it is one line per connection)."""
    if isinstance(reply, (bytes, str)):
        for line in _text(reply).splitlines():
            for field in line.split(" "):
                if field.startswith("name="):
                    yield field[len("name="):]
        return
    for entry in reply or []:
        yield _text(entry.get("name", ""))


async def _versions_in_use(run: Run) -> set[str]:
    names = _client_names(await run("CLIENT", "LIST"))
    return {n[len(LIBRARY_PREFIX):] for n in names if n.startswith(LIBRARY_PREFIX)}


@dataclass(frozen=True)
class PruneReport:
    """What a prune found and did, versions sorted (LEGACY_LIBRARY for the unversioned
    library of releases before side-by-side versions)."""

    loaded: Sequence[str]
    in_use: Sequence[str]
    removed: Sequence[str]


async def prune_libraries(
    redis: Redis, *, keep: Iterable[str] = (), legacy: bool = False, dry_run: bool = False
) -> PruneReport:
    """Delete every redurable library version except this one, those in `keep`, and
    those a connected process uses (a connection named after it on any primary). A
    process whose connections are all down at that instant is not seen: run it after a
    deploy has finished, and `keep` what may still come back (docs/deploying.md).

    The unversioned library of earlier releases goes only with `legacy`: their
    processes do not name their connections, so nothing tells whether one still runs."""
    runs = _primaries(redis)
    loaded: set[str] = set()
    in_use: set[str] = set()
    per_node: list[set[str]] = []
    for run in runs:
        versions = await _library_versions(run)
        per_node.append(versions)
        loaded |= versions
        in_use |= await _versions_in_use(run)
    kept = {library_version(), *keep, *in_use, *(() if legacy else (LEGACY_LIBRARY,))}
    removed = sorted(loaded - kept)
    if not dry_run:
        for run, versions in zip(runs, per_node, strict=True):
            for version in sorted(versions - kept):
                name = LEGACY_LIBRARY if version == LEGACY_LIBRARY else library_name(version)
                try:
                    await run("FUNCTION", "DELETE", name)
                except ResponseError as exc:
                    if "library not found" not in str(exc).lower():
                        raise  # gone already: another prune ran at the same time
    return PruneReport(loaded=sorted(loaded), in_use=sorted(in_use & loaded), removed=removed)
