"""The cluster router's pure parts (engine/resp_cluster.py): slots, which key routes a
command, durability waits merged over nodes, task reads split by slot. The routing
itself runs against a real cluster in tests/integration/test_cluster_mode.py."""

from __future__ import annotations

import pytest
from redis.crc import key_slot as redis_py_key_slot
from redis.exceptions import ResponseError

from engine.keys import Keys
from engine.resp_cluster import _split_read, command_key, key_slot, weakest_wait


@pytest.mark.parametrize("key", [
    "redurable:{3}:wf:order-1", "plain", "{user1000}.following", "a{}b{c}", "x{b}y", "{",
    "redurable:tq:orders:queries",
])
def test_key_slot_is_redis_s(key: str) -> None:
    assert key_slot(key) == redis_py_key_slot(key.encode())
    assert key_slot(key.encode()) == key_slot(key)


def test_every_key_of_a_shard_is_in_one_slot() -> None:
    keys = Keys("ns", 8)
    wf = "order-1"
    shard = keys.shard(wf)
    slots = {key_slot(k) for k in (
        keys.workflow(wf), keys.history(wf), keys.buffer(wf), keys.timers(shard),
        keys.workflow_tasks(shard, "q"), keys.activity_tasks(shard, "q"),
        keys.sticky_tasks(shard, "q", "w-1"), keys.dead_letters(shard),
        keys.requests(shard), keys.closed_channel(shard))}
    assert len(slots) == 1


def test_stream_dead_letters_share_the_stream_s_slot() -> None:
    """rd_claim_from moves a query request to the dead letters in one call: one slot."""
    keys = Keys("ns", 4)
    for stream in (keys.queries("orders"), keys.sticky_queries("orders", "w-1a2b")):
        dlq = keys.stream_dead_letters(stream)
        assert dlq.startswith("ns:")  # inside the namespace's ACL key pattern
        assert key_slot(dlq) == key_slot(stream)


def test_command_key() -> None:
    assert command_key(("FCALL", "rd_start", 4, "k1", "k2", "k3", "k4", "a")) == "k1"
    assert command_key(("FCALL_RO", "rd_library_version", 0)) is None
    assert command_key(("XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "BLOCK", 5,
                        "STREAMS", "s1", "s2", ">", ">")) == "s1"
    assert command_key(("PUBSUB", "SHARDNUMSUB", "chan")) == "chan"
    assert command_key(("PUBSUB", "NUMSUB", "chan")) is None
    assert command_key(("WAIT", 1, 100)) is None
    assert command_key(("HMGET", "h", "a", "b")) == "h"
    assert command_key(("XPENDING", "s", "g")) == "s"


def test_weakest_wait() -> None:
    assert weakest_wait([2, 1, 3]) == 1
    assert weakest_wait([[1, 2], [1, 0], [0, 2]]) == [0, 0]
    error = ResponseError("NOREPLICAS")
    assert weakest_wait([1, error]) is error


def test_split_read_groups_streams_by_slot_in_order() -> None:
    keys = Keys("ns", 4)
    streams = [keys.workflow_tasks(s, "q") for s in range(4)]
    streams += [keys.sticky_tasks(s, "q", "w") for s in range(4)]
    streams.append(keys.queries("q"))
    command: list[str | int] = ["XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "BLOCK", 5,
                                "STREAMS", *streams, *([">"] * len(streams))]
    groups = _split_read(command)
    assert len(groups) == 5
    assert groups[0] == [streams[0], streams[4]]
    assert groups[-1] == [keys.queries("q")]
    assert sorted(s for g in groups for s in g) == sorted(streams)
