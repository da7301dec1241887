"""`redurable load-functions`: what an admin runs once per server (and per upgrade) when
workers and clients connect as ACL users that may not run FUNCTION LOAD
(docs/security.md), and, with `--prune`, after a rolling deploy to remove the library
versions no connected process uses any more (docs/deploying.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from engine.cluster_redis import close_redis, cluster_client, is_cluster
from engine.functions import PruneReport, library_name, library_version, load_library
from engine.functions import prune_libraries as prune_versions
from engine.sentinel import SentinelUrl, is_sentinel_url, sentinel_redis
from sdk.cli.common import UrlOption, fail, redacted, run, stdout
from sdk.client.server_url import cli_url

PruneOption = Annotated[
    bool,
    typer.Option("--prune", help="Then delete the library versions that no connected "
                 "process uses (and not kept with --keep)."),
]
KeepOption = Annotated[
    list[str] | None,
    typer.Option("--keep", help="With --prune: a version to keep although no connected "
                 "process uses it now (repeatable)."),
]
LegacyOption = Annotated[
    bool,
    typer.Option("--legacy", help="With --prune: also delete the unversioned library of "
                 "releases before side-by-side versions (their processes cannot be "
                 "seen: only once they have all stopped)."),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="With --prune: only say what would be deleted."),
]


def load_functions(
    redis_url: UrlOption = None,
    prune: PruneOption = False,
    keep: KeepOption = None,
    legacy: LegacyOption = False,
    dry_run: DryRunOption = False,
) -> None:
    """Load this version of the engine's Redis Functions library (needs FUNCTION LOAD);
    other versions stay, for the processes that still call them."""
    target = redis_url or cli_url()

    async def body() -> PruneReport | None:
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
                await close_redis(redis)
                redis = cluster_client(target, socket_connect_timeout=5)
            if not dry_run:
                await load_library(redis)
            if prune:
                return await prune_versions(redis, keep=keep or (), legacy=legacy,
                                            dry_run=dry_run)
            return None
        except RedisConnectionError as exc:
            fail(f"cannot reach a server at {redacted(target)}: {exc}")
        except RedisError as exc:
            fail(f"server at {redacted(target)} refused: {exc}")
        finally:
            await close_redis(redis)

    report = run(body)
    if not dry_run:
        stdout.print(f"function library {library_name()!r} version {library_version()} "
                     "is loaded")
    if report is not None:
        verb = "would delete" if dry_run else "deleted"
        stdout.print(f"versions on the server: {', '.join(report.loaded) or 'none'}")
        stdout.print(f"in use by connected processes: {', '.join(report.in_use) or 'none'}")
        stdout.print(f"{verb}: {', '.join(report.removed) or 'none'}")
