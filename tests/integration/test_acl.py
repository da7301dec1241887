"""A Redis ACL user limited to its namespace (engine.acl) runs workers and clients, and
cannot touch anything else. On a private server of this pass's kind (Redis or
Valkey), so the shared server's users are never changed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from engine.acl import acl_rules, acl_setuser_command
from engine.errors import InvalidArgumentError
from engine.functions import (
    LibraryMissingError,
    function_name,
    library_name,
    library_source,
    library_version,
    load_library,
)
from engine.keys import Keys
from engine.library import build_library, lua_files
from sdk import Client
from sdk._devserver import free_port
from sdk.worker.presence import DeathWatch, PresenceHolder
from tests.conftest import unique_prefix
from tests.integration.cli_support import redurable
from tests.integration.private_server import pass_binary, private_server, run_smoke_workflow

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-secret"
APP_PASSWORD = "app-secret"


async def command(redis: Redis, *args: Any) -> Any:
    return await redis.execute_command(*args)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def acl_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    directory = tmp_path_factory.mktemp("acl")
    with private_server(
        pass_binary(), directory, "--port", str(port), "--requirepass", ADMIN_PASSWORD, port=port
    ):
        yield port


@pytest.fixture
async def admin(acl_port: int) -> AsyncIterator[Redis]:
    redis = Redis(host="127.0.0.1", port=acl_port, password=ADMIN_PASSWORD)
    await load_library(redis)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
async def app_url(admin: Redis, acl_port: int) -> AsyncIterator[tuple[str, str]]:
    """A fresh user limited to a fresh namespace: (URL, prefix)."""
    prefix = unique_prefix()
    user = f"app-{prefix}"
    await command(admin, *acl_setuser_command(user, APP_PASSWORD, prefix))
    try:
        yield f"redis://{user}:{APP_PASSWORD}@127.0.0.1:{acl_port}", prefix
    finally:
        await command(admin, "ACL", "DELUSER", user)


async def test_restricted_user_runs_the_smoke_workflow(
    admin: Redis, app_url: tuple[str, str]
) -> None:
    url, prefix = app_url
    await admin.acl_log_reset()
    client = await Client.connect(url, prefix=prefix)
    try:
        await run_smoke_workflow(client)
    finally:
        await client.close()
    # Nothing was refused on the way, not even a command whose error is tolerated
    # (the server logs every ACL denial).
    denied = [entry for entry in await admin.acl_log() if entry["username"] == f"app-{prefix}"]
    assert denied == []


async def test_restricted_user_cannot_touch_anything_else(
    admin: Redis, app_url: tuple[str, str]
) -> None:
    url, prefix = app_url
    other = Keys("other-namespace")
    await admin.set("outside", "x")
    app = Redis.from_url(url)
    try:
        assert await app.set(f"{prefix}:mine", "ok")  # its own namespace: allowed
        attempts = [
            ("GET", "outside"),
            ("SET", "outside", "y"),
            ("DEL", "outside"),
            ("HGETALL", other.workflow("order-3")),
            ("XRANGE", other.history("order-3"), "-", "+"),
            ("XADD", other.workflow_tasks(0, "orders"), "*", "f", "v"),
            ("PUBLISH", other.closed_channel(0), "order-3"),
            ("SUBSCRIBE", other.closed_channel(0)),
            ("SPUBLISH", other.closed_channel(0), "order-3"),
            ("SSUBSCRIBE", other.updates_channel(0)),
            # Engine functions on another namespace's keys: Lua runs as the caller.
            ("FCALL", function_name("rd_signal"), 4, *[other.workflow("x")] * 4, "", "s", b"", 0),
            ("FUNCTION", "LOAD", "REPLACE", library_source()),
            ("FUNCTION", "DELETE", library_name()),
            ("FUNCTION", "FLUSH"),
            ("EVAL", "return redis.call('GET', 'outside')", 0),
            ("SCAN", 0),
            ("KEYS", "*"),
            ("RANDOMKEY",),
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "SET", "requirepass", ""),
            ("ACL", "SETUSER", "intruder", "on", "nopass", "+@all", "~*"),
        ]
        for attempt in attempts:
            with pytest.raises(NoPermissionError):
                await command(app, *attempt)
        assert await admin.get("outside") == b"x"
        assert await admin.function_list(library=library_name())
    finally:
        await app.aclose()
        await admin.delete("outside")


async def test_restricted_user_cannot_connect_to_another_namespace(
    app_url: tuple[str, str],
) -> None:
    url, _ = app_url
    with pytest.raises(NoPermissionError):
        await Client.connect(url, prefix="other-namespace")


async def test_missing_library_is_a_clear_error(
    admin: Redis, app_url: tuple[str, str], acl_port: int
) -> None:
    url, prefix = app_url
    await admin.function_delete(library_name())
    with pytest.raises(LibraryMissingError, match="load it once as an admin: redurable load-"):
        await Client.connect(url, prefix=prefix)
    # Only another version on the server (an upgrade not loaded yet): refused the same way.
    await admin.function_load(build_library(lua_files() + "\n-- an older version\n"))
    with pytest.raises(LibraryMissingError):
        await Client.connect(url, prefix=prefix)
    # The namespace user cannot fix it; the admin can, with the CLI.
    refused = await anyio.run_process(redurable("load-functions", "--redis-url", url), check=False)
    assert refused.returncode == 1
    assert b"may not load it" in refused.stderr and b"Traceback" not in refused.stderr
    admin_url = f"redis://default:{ADMIN_PASSWORD}@127.0.0.1:{acl_port}"
    loaded = await anyio.run_process(redurable("load-functions", "--redis-url", admin_url))
    assert f"version {library_version()} is loaded" in loaded.stdout.decode()
    client = await Client.connect(url, prefix=prefix)
    await client.close()


def test_rules_are_the_documented_ones() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    assert " ".join(acl_rules("redurable")) in text


@pytest.mark.parametrize("prefix", ["a*", "a?b", "x[1]", "with space", ""])
def test_prefixes_that_would_widen_the_rule_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidArgumentError):
        acl_rules(prefix)


async def test_wrong_password_is_refused(app_url: tuple[str, str]) -> None:
    url, prefix = app_url
    wrong = url.replace(APP_PASSWORD, "wrong-secret")
    with pytest.raises(AuthenticationError):
        await Client.connect(wrong, prefix=prefix)
    # The CLI says so in one line, without echoing the password.
    done = await anyio.run_process(
        redurable("workflow", "list", "--redis-url", wrong, "--prefix", prefix), check=False
    )
    assert done.returncode == 1
    assert b"invalid username-password pair" in done.stderr
    assert b":***@127.0.0.1" in done.stderr and b"wrong-secret" not in done.stderr


async def test_a_user_without_channel_rights_does_not_claim_presence(
    admin: Redis, acl_port: int
) -> None:
    """SUBSCRIBE's refusal (NOPERM: Redis 7 users get no channels by default) comes back
    only with the next read: unseen, the worker advertised presence with an empty
    channel and every other worker took it for dead and claimed its tasks."""
    await command(admin, "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all",
                  "resetchannels")
    redis = Redis(host="127.0.0.1", port=acl_port, username="nochan", password="pw")
    try:
        holder = PresenceHolder(redis, Keys("p", 4), "w")
        await holder.subscribe()
        assert not holder.supported
    finally:
        await redis.aclose()
        await command(admin, "ACL", "DELUSER", "nochan")


async def test_a_user_without_pubsub_numsub_falls_back_to_the_heartbeat(
    admin: Redis, acl_port: int
) -> None:
    """A refused PUBSUB NUMSUB is a server that cannot tell presence, like one without
    the command: the watcher stops, it does not raise out of the worker (a crash)."""
    await command(admin, "ACL", "SETUSER", "nonumsub", "on", ">pw", "~*", "&*", "+@all",
                  "-pubsub|numsub")
    redis = Redis(host="127.0.0.1", port=acl_port, username="nonumsub", password="pw")
    keys = Keys(unique_prefix(), 4)
    try:
        await redis.zadd(keys.workers("q"), {"other": 1})
        await redis.hset(keys.worker_info("q"), "other", '{"presence": true}')
        watch = DeathWatch(redis, keys, "q", "me")
        with contextlib.suppress(RedisError):
            assert await watch.find_dead() == []
        assert not watch.working
    finally:
        await redis.delete(keys.workers("q"), keys.worker_info("q"))
        await redis.aclose()
        await command(admin, "ACL", "DELUSER", "nonumsub")
