"""The cold path's cluster client routes an FCALL by its keys without asking a node
(engine/cluster_redis.py): redis-py sends `COMMAND GETKEYS` before every FCALL, one
more round trip and server call each. No server: the client is never connected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import RedisClusterException

from engine.cluster_redis import ClusterRedis
from engine.resp_cluster import key_slot

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@pytest.fixture
def client() -> Iterator[tuple[ClusterRedis, list[tuple[Any, ...]]]]:
    """A cluster client whose key lookups by the server are recorded (and answered as
    the server would, from the numkeys arguments)."""
    asked: list[tuple[Any, ...]] = []
    c = ClusterRedis(host="127.0.0.1", port=1)

    async def get_keys(*args: Any) -> Any:
        asked.append(args)
        if str(args[0]).upper().startswith("FCALL"):
            return args[3: 3 + int(args[2])]
        return args[1:2]

    c.commands_parser.get_keys = get_keys  # type: ignore[method-assign]
    yield c, asked


async def test_an_fcall_is_routed_by_its_keys_without_asking_a_node(
        client: tuple[ClusterRedis, list[tuple[Any, ...]]]) -> None:
    c, asked = client
    slot = await c._determine_slot("FCALL", "rd_wft_start", 2, "{s3}:a", "{s3}:b", "x")
    assert slot == key_slot("{s3}:a")
    assert await c._determine_slot("FCALL_RO", "rd_q", "1", "{w}:k") == key_slot("{w}:k")
    assert await c._determine_slot("fcall", "rd_x", b"1", "{w}:k") == key_slot("{w}:k")
    assert asked == []


async def test_what_it_cannot_route_goes_the_library_way(
        client: tuple[ClusterRedis, list[tuple[Any, ...]]]) -> None:
    c, asked = client
    # Keys in two slots: redis-py's own error, as before.
    with pytest.raises(RedisClusterException, match="same key slot"):
        await c._determine_slot("FCALL", "rd_x", 2, "{a}:k", "{b}:k")
    # No keys: any node (redis-py's random slot).
    assert 0 <= await c._determine_slot("FCALL", "rd_x", 0) < 16384
    assert len(asked) == 2
    # Other commands are left to redis-py.
    assert await c._determine_slot("GET", "{w}:k") == key_slot("{w}:k")
