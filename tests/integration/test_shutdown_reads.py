"""A worker that stops leaves nothing delivered to it behind, however its last reads
ended (the bug fakeredis 2.41 exposed: docs/testing.md, "fakeredis")."""

from __future__ import annotations

import uuid
from typing import Any, cast

import anyio
import msgpack
import pytest
from redis.asyncio import Redis

from engine.cluster_redis import ClusterRedis, cluster_client, is_cluster
from engine.keys import GROUP
from engine.resp import RespPool
from sdk import Client, WorkflowFailureError
from sdk.examples import order
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio


def _worker(client: Client, **options: Any) -> Any:
    return running_worker(
        client, task_queue="q", workflows=[order.Order], activities=order.ACTIVITIES,
        graceful_shutdown_timeout=0.3, liveness_timeout=30.0, **options,
    )


#: Add an entry to a stream (KEYS[1]) and deliver it to a consumer at once.
#: ARGV: group, consumer, the entry's field/value pairs.
_ADD_AND_READ = """
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
return redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
"""


async def test_query_delivered_to_a_stopping_worker_is_answered_by_the_next(
    client: Client,
) -> None:
    """A query request the server delivered to a worker whose read never returned it (a
    reply lost with a connection, or a read cut short as the worker stopped) was pending
    on a consumer that no longer reads: no other worker ever took it, and the query timed
    out. The stopping worker now hands back what it was delivered but never took."""
    async with _worker(client) as first:
        handle = await client.start_workflow(order.Order.run, 3, 0.05, id="o-q", task_queue="q")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError):
            await handle.result()  # not picked up in time: refunded
        # Deliver a query request to `first` without its poller seeing it: the add and
        # the read in one script (one key: a MULTI pipeline fails in redis-py's asyncio
        # cluster client), so the poller blocked on the stream cannot take it first.
        reply_key = client.keys.query_reply(uuid.uuid4().hex)
        request: dict[str, Any] = {
            "request_id": "r1", "workflow_id": "o-q", "name": "get_status",
            "args": client.codec.encode([]), "reply": reply_key, "timeout_ms": 10_000,
        }
        fields = [part for pair in request.items() for part in pair]
        await client.redis.eval(
            _ADD_AND_READ, 1, client.keys.queries("q"), GROUP, first.identity, *fields)
    async with _worker(client):
        reply = await client.redis.blpop([reply_key], timeout=5)
    assert reply is not None, "the query request was left pending on the stopped worker"
    answer = msgpack.unpackb(reply[1], raw=False)
    assert answer["status"] == "ok"
    assert client.codec.decode(answer["payload"])["state"] == "Refunded"


async def test_cancelled_blocking_read_takes_nothing_on_a_real_server(
    real_client: Client,
) -> None:
    """Why the query test above failed on fakeredis 2.41 only, before the fix: a blocking
    XREADGROUP that the client cancels. redis-py then closes the connection and a real
    server forgets the read, so an entry added later goes to the next reader. fakeredis
    2.41 (the first version whose XREADGROUP really blocks) keeps the cancelled read
    waiting inside its fake server, where it takes the next entry for a consumer nobody
    reads for. The worker no longer cancels its reads when it stops (they end by
    themselves within half a second), so neither server can strand an entry that way."""
    redis: Redis = real_client.redis
    stream = f"{real_client.keys.prefix}:probe"
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    with anyio.move_on_after(0.2):
        await redis.xreadgroup(GROUP, "gone", {stream: ">"}, count=1, block=5000)
    await redis.xadd(stream, {"k": "v"})
    await anyio.sleep(0.1)
    pending: Any = await redis.xpending(stream, GROUP)
    assert pending["pending"] == 0
    read: Any = await redis.xreadgroup(GROUP, "next", {stream: ">"}, count=1)
    assert len(read[0][1]) == 1


async def test_cancelled_blocking_read_on_the_fast_path_takes_nothing(
    real_client: Client,
) -> None:
    """The same for the worker's own reads (`Store.read_group` on engine/resp.py's
    blocking connections): a cancelled read closes its connection, never reused, and the
    server forgets the read, so the entry added next goes to the next reader."""
    store, redis = real_client.store, real_client.redis
    assert store.fast is not None
    stream = f"{real_client.keys.prefix}:probe-fast"
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    with anyio.move_on_after(0.2):
        await store.read_group("gone", [stream], 1, 5000)
    await redis.xadd(stream, {"k": "v"})
    await anyio.sleep(0.1)
    pending: Any = await redis.xpending(stream, GROUP)
    assert pending["pending"] == 0
    read = await store.read_group("next", [stream], 1, 100)
    assert [fields for _, _, fields in read] == [{b"k": b"v"}]


async def _node_url(redis_url: str, key: str) -> str:
    """The URL of the server holding `key`: on a cluster, the node serving its slot."""
    if not await is_cluster(redis_url):
        return redis_url
    cluster = cast(ClusterRedis, cluster_client(redis_url))
    try:
        await cluster.initialize()
        return cluster.node_url(key)
    finally:
        await cluster.aclose()


async def test_a_blocking_read_ending_after_the_pool_closed_leaves_no_connection(
    redis_url: str,
) -> None:
    """A read still blocked when its RespPool closes used to put its connection back in
    the idle list once it ended, after close() had emptied that list: a socket nobody
    would ever close. Now it closes its connection itself."""
    stream = f"t{uuid.uuid4().hex[:10]}:probe-close"
    redis_url = await _node_url(redis_url, stream)  # a RespPool talks to one node
    pool = RespPool.from_url(redis_url)
    await pool.execute("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.execute_blocking, "XREADGROUP", "GROUP", GROUP, "c", "COUNT",
                          1, "BLOCK", 300, "STREAMS", stream, ">")  # fmt: skip
            await anyio.sleep(0.1)
            await pool.close()  # the read is still blocked on the server
        assert pool._idle == []
    finally:
        cleanup = RespPool.from_url(redis_url)
        await cleanup.execute("DEL", stream)
        await cleanup.close()
