"""Small pieces of the security setup: the library version check, the ACL rule, and
URLs in messages."""

from __future__ import annotations

import fakeredis
import pytest

from engine.acl import acl_rules, acl_setuser_command
from engine.functions import (
    VERSION_FUNCTION,
    function_name,
    is_loaded,
    library_name,
    library_source,
    library_version,
    load_library,
)
from sdk.cli.common import redacted

pytestmark = pytest.mark.anyio


async def test_library_is_loaded_only_when_missing() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    assert not await is_loaded(redis)
    await load_library(redis)
    assert await is_loaded(redis)
    await load_library(redis)  # present: nothing to do (no "already exists" error)
    assert len(await redis.function_list()) == 1
    await redis.aclose()


def test_version_is_a_hash_of_the_lua_source() -> None:
    source = library_source()
    assert source.startswith(f"#!lua name={library_name()}\n")
    assert f"function_name='{function_name(VERSION_FUNCTION)}'" in source
    assert len(library_version()) == 16 and int(library_version(), 16) >= 0


def test_acl_rule_limits_keys_and_channels_to_the_prefix() -> None:
    rules = acl_rules("shop")
    assert rules[:4] == ["resetkeys", "~shop:*", "resetchannels", "&shop:*"]
    # Loading functions is taken away after the categories that would grant it.
    assert rules.index("-@scripting") > rules.index("+@write")
    assert rules.index("+fcall") > rules.index("-@scripting")
    assert acl_setuser_command("u", "pw", "shop")[:6] == [
        "ACL",
        "SETUSER",
        "u",
        "reset",
        "on",
        ">pw",
    ]


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        (
            "rediss://:s3cret@host:6380?ssl_cert_reqs=none",
            "rediss://:***@host:6380?ssl_cert_reqs=none",
        ),
        ("redis://user@host", "redis://user@host"),
        ("redis://us:er:p@ss@host", "redis://us:***@host"),
    ],
)
def test_urls_in_messages_hide_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown
