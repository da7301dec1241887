"""The cluster router's pure parts (engine/resp_cluster.py): slots, which key routes a
command, durability waits merged over nodes, task reads split by slot. The routing
itself runs against a real cluster in tests/integration/test_cluster_mode.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.crc import key_slot as redis_py_key_slot
from redis.exceptions import ResponseError

from engine.cluster_commands import command_key, key_slot, split_read, weakest_wait
from engine.keys import Keys
from engine.resp_cluster import MAX_REDIRECTS, ClusterRespPool


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
    groups = split_read(command)
    assert len(groups) == 5
    assert groups[0] == [streams[0], streams[4]]
    assert groups[-1] == [keys.queries("q")]
    assert sorted(s for g in groups for s in g) == sorted(streams)


class _FakeNode:
    """A node whose blocking reads wait until the test delivers their reply."""

    def __init__(self) -> None:
        self.reads: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []

    async def execute_blocking(self, *args: Any, asking: bool = False) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.reads.append((args, future))
        return await future


class _FakeCluster(ClusterRespPool):
    def __init__(self, owners: dict[int, tuple[str, int]]) -> None:
        super().__init__([("127.0.0.1", 1)])
        self.fakes: dict[tuple[str, int], _FakeNode] = {}
        for slot, address in owners.items():
            self._owner[slot] = address
        self._stale = False

    def node(self, address: tuple[str, int]) -> Any:
        return self.fakes.setdefault(address, _FakeNode())

    #: Replies of the non-blocking pass (one batch per call): nothing there by default.
    at_once: list[list[Any]] = []
    at_once_sent: list[list[Any]] = []

    async def execute_many(self, commands: Any) -> list[Any]:
        self.at_once_sent = [*self.at_once_sent, *commands]
        return self.at_once.pop(0) if self.at_once else [None] * len(commands)


def _read(streams: list[str]) -> list[Any]:
    return ["XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "BLOCK", 500, "STREAMS",
            *streams, *([">"] * len(streams))]


@pytest.mark.anyio
async def test_a_read_over_slots_returns_the_first_and_keeps_the_others() -> None:
    keys = Keys("ns", 2)
    a, b = keys.workflow_tasks(0, "q"), keys.workflow_tasks(1, "q")
    pool = _FakeCluster({key_slot(a): ("n", 1), key_slot(b): ("n", 2)})
    first = asyncio.ensure_future(pool.execute_blocking(*_read([a, b])))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    node_a, node_b = pool.fakes[("n", 1)], pool.fakes[("n", 2)]
    assert [args[-2:] for args, _ in node_a.reads] == [(a, ">")]  # one read per slot
    assert [args[-2:] for args, _ in node_b.reads] == [(b, ">")]
    node_a.reads[0][1].set_result([[a.encode(), [(b"1-0", [b"k", b"v"])]]])
    assert await first == [[a.encode(), [(b"1-0", [b"k", b"v"])]]]
    # The read of b is still blocked: the next call waits on it instead of a new one.
    second = asyncio.ensure_future(pool.execute_blocking(*_read([a, b])))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(node_b.reads) == 1 and len(node_a.reads) == 2
    node_b.reads[0][1].set_result([[b.encode(), [(b"2-0", [b"k", b"w"])]]])
    assert await second == [[b.encode(), [(b"2-0", [b"k", b"w"])]]]
    # Cancelling the caller cancels its reads (resp.py then shuts their connections).
    third = asyncio.ensure_future(pool.execute_blocking(*_read([a, b])))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    await asyncio.sleep(0)
    assert node_a.reads[1][1].cancelled() and node_b.reads[1][1].cancelled()
    assert not pool._reads


@pytest.mark.anyio
async def test_a_stopping_worker_waits_for_its_kept_reads() -> None:
    keys = Keys("ns", 2)
    a, b = keys.workflow_tasks(0, "q"), keys.workflow_tasks(1, "q")
    pool = _FakeCluster({key_slot(a): ("n", 1), key_slot(b): ("n", 2)})
    first = asyncio.ensure_future(pool.execute_blocking(*_read([a, b])))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    pool.fakes[("n", 1)].reads[0][1].set_result(None)
    assert await first == []
    finishing = asyncio.ensure_future(pool.finish_reads("c"))
    await asyncio.sleep(0)
    assert not finishing.done()  # b's read is still blocked on the server
    pool.fakes[("n", 2)].reads[0][1].set_result(None)
    await finishing
    assert not pool._reads


@pytest.mark.anyio
async def test_a_read_over_slots_takes_what_is_there_without_blocking() -> None:
    """As one XREADGROUP on a single server answers at once when any stream has entries,
    a read over several slots first asks every slot without BLOCK: with entries there,
    no blocking read starts (none is kept, to deliver later to a consumer gone)."""
    keys = Keys("ns", 2)
    a, b = keys.workflow_tasks(0, "q"), keys.workflow_tasks(1, "q")
    pool = _FakeCluster({key_slot(a): ("n", 1), key_slot(b): ("n", 2)})
    pool.at_once = [[None, [[b.encode(), [(b"2-0", [b"k", b"w"])]]]]]
    assert await pool.execute_blocking(*_read([a, b])) == [[b.encode(), [(b"2-0", [b"k", b"w"])]]]
    assert not pool.fakes and not pool._reads
    assert all(b"BLOCK" not in [str(x).encode() for x in command]
               for command in pool.at_once_sent)


class _MigratingNode:
    """A node that answers each blocking read with the next of `replies` (an exception
    is raised, as resp.py raises an error reply), and records whether ASKING came first."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.reads: list[tuple[tuple[Any, ...], bool]] = []

    async def execute_blocking(self, *args: Any, asking: bool = False) -> Any:
        self.reads.append((args, asking))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


class _MigratingCluster(ClusterRespPool):
    """Two nodes; a map refresh (CLUSTER SLOTS) gives the slot to `owner_after`."""

    def __init__(self, slot: int, nodes: dict[tuple[str, int], _MigratingNode],
                 owner_after: tuple[str, int]) -> None:
        super().__init__([("127.0.0.1", 1)])
        self.slot, self.fakes, self.owner_after = slot, nodes, owner_after
        self._owner[slot] = ("n", 1)
        self._stale = False
        self.refreshes = 0

    def node(self, address: tuple[str, int]) -> Any:
        return self.fakes[address]

    async def refresh(self) -> None:
        self.refreshes += 1
        self._owner[self.slot] = self.owner_after
        self._stale = False


@pytest.mark.anyio
async def test_a_blocked_read_whose_stream_migrated_away_reads_again_where_it_went() -> None:
    """MIGRATE deletes the key on the source: a client blocked on that stream gets
    "UNBLOCKED the stream key no longer exists". That is the slot moving, not an error
    of the caller's (a worker died of it): the read goes again, after a map refresh."""
    stream = Keys("ns", 1).workflow_tasks(0, "q")
    entries = [[stream.encode(), [(b"1-0", [b"k", b"v"])]]]
    source = _MigratingNode([ResponseError("UNBLOCKED the stream key no longer exists")])
    target = _MigratingNode([entries])
    pool = _MigratingCluster(key_slot(stream), {("n", 1): source, ("n", 2): target},
                             owner_after=("n", 2))
    assert await pool.execute_blocking(*_read([stream])) == entries
    assert pool.refreshes == 1
    assert [asking for _, asking in target.reads] == [False]


@pytest.mark.anyio
async def test_a_blocking_read_follows_ask_with_asking() -> None:
    """While its slot migrates, a stream already moved is answered with ASK by the
    source, whose slot map still names itself: the read must go to the node named, after
    ASKING, not back to the source (which would answer ASK again until the migration
    ends)."""
    stream = Keys("ns", 1).workflow_tasks(0, "q")
    slot = key_slot(stream)
    source = _MigratingNode([ResponseError(f"ASK {slot} n:2")] * (MAX_REDIRECTS + 1))
    target = _MigratingNode([None])
    pool = _MigratingCluster(slot, {("n", 1): source, ("n", 2): target},
                             owner_after=("n", 1))  # the map says: still the source
    assert await pool.execute_blocking(*_read([stream])) is None
    assert [asking for _, asking in target.reads] == [True]
    assert len(source.reads) == 1


class _ScriptedNode:
    """A node answering each command sent with the next of `replies`; records whether
    ASKING came before it."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.sent: list[bool] = []

    async def execute_many(self, commands: Any) -> list[Any]:
        asking = commands[0] == ("ASKING",)
        self.sent.append(asking)
        reply = self.replies.pop(0)
        return ["OK", reply] if asking else [reply]


def _slot_moving(slot: int) -> ResponseError:
    return ResponseError(f"TRYAGAIN the slot of k{{{slot}}} is moving (ERR ...)")


@pytest.mark.anyio
async def test_a_call_on_a_slot_moving_key_by_key_is_retried_until_it_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Function call whose declared keys have moved is sent to the target with ASK
    and answers TRYAGAIN there while the slot is still moving (engine/lua/00_common.lua
    `slot_moving`): ASK and TRYAGAIN alternate for as long as the move takes, more
    times than MAX_REDIRECTS, and the call lands once it is over."""
    monkeypatch.setattr("engine.resp_cluster.RETRY_PAUSE_S", 0.0)
    stream = Keys("ns", 1).workflow_tasks(0, "q")
    slot = key_slot(stream)
    turns = 3 * MAX_REDIRECTS
    source = _ScriptedNode([ResponseError(f"ASK {slot} n:2")] * (turns + 1))
    target = _ScriptedNode([_slot_moving(slot)] * turns + ["done"])
    pool = _MigratingCluster(slot, {("n", 1): source, ("n", 2): target},  # type: ignore[dict-item]
                             owner_after=("n", 1))
    assert await pool.execute_many([("FCALL", "rd_x", 1, stream)]) == ["done"]
    assert target.sent == [True] * (turns + 1)


@pytest.mark.anyio
async def test_tryagain_is_handed_back_after_retry_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("engine.resp_cluster.RETRY_PAUSE_S", 0.001)
    monkeypatch.setattr("engine.resp_cluster.RETRY_FOR_S", 0.05)
    stream = Keys("ns", 1).workflow_tasks(0, "q")
    slot = key_slot(stream)
    source = _ScriptedNode([_slot_moving(slot)] * 1000)
    pool = _MigratingCluster(slot, {("n", 1): source},  # type: ignore[dict-item]
                             owner_after=("n", 1))
    reply = (await pool.execute_many([("FCALL", "rd_x", 1, stream)]))[0]
    assert isinstance(reply, ResponseError) and str(reply).startswith("TRYAGAIN")
    assert 3 < len(source.sent) < 1000
