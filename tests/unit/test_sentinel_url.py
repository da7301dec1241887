"""`redis+sentinel://` URLs (engine/sentinel.py): what they name, and clear errors."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgumentError
from engine.resp import RespPool
from engine.sentinel import SentinelUrl, is_sentinel_url


def test_one_or_more_sentinels_a_service_and_a_database() -> None:
    one = SentinelUrl.parse("redis+sentinel://10.0.0.1:26379/orders")
    assert one == SentinelUrl((("10.0.0.1", 26379),), "orders")
    many = SentinelUrl.parse("redis+sentinel://u:p%40ss@a:1,b,c:3/svc/2")
    assert many.sentinels == (("a", 1), ("b", 26379), ("c", 3))
    assert (many.service, many.db, many.username, many.password) == ("svc", 2, "u", "p@ss")
    assert is_sentinel_url("REDIS+SENTINEL://a/b")
    assert not is_sentinel_url("redis://a:6379")


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://a:26379", "names no service"),
    ("redis+sentinel://a:26379/", "names no service"),
    ("redis+sentinel://a:x/svc", "bad port"),
    ("redis+sentinel://a,,b/svc", "no host"),
    ("redis+sentinel://a/svc/zero", "database must be a number"),
    ("redis://a/svc", "not a redis\\+sentinel:// URL"),
])
def test_bad_urls_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        SentinelUrl.parse(url)


def test_the_lean_client_asks_the_sentinels() -> None:
    pool = RespPool.from_url("redis+sentinel://:secret@127.0.0.1:26379/svc/3")
    assert pool.resolver is not None
    assert (pool.db, pool.password) == (3, "secret")
    with pytest.raises(ValueError, match="redis\\+sentinel://"):
        RespPool.from_url("http://127.0.0.1/")
