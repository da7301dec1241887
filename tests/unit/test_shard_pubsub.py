"""Sharded subscriptions to the notice channels (engine/shard_pubsub.py) on fakeredis."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from redis.exceptions import MovedError, NoPermissionError, ResponseError

from engine.keys import Keys
from engine.shard_pubsub import ShardSubscription, SubscriptionLostError, is_retryable

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

KEYS = Keys("t", 4)
CHANNELS = [KEYS.closed_channel(s) for s in range(KEYS.shards)]


async def test_a_sharded_publish_reaches_the_subscription_and_a_plain_one_does_not() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    subscription = ShardSubscription(redis, CHANNELS)
    await subscription.open()
    assert subscription.connections == 1  # one server: one connection
    got: list[bytes] = []
    reader = asyncio.create_task(subscription.run(got.append))
    try:
        assert await redis.publish(CHANNELS[1], "plain") == 0
        assert await redis.spublish(CHANNELS[1], "wf-1") == 1
        assert await redis.spublish(CHANNELS[3], "wf-2") == 1
        while len(got) < 2:
            await asyncio.sleep(0.01)
        assert got == [b"wf-1", b"wf-2"]
    finally:
        reader.cancel()
        await subscription.close()
        await redis.aclose()


async def test_a_subscription_dropped_by_the_server_ends_the_run() -> None:
    """A master that loses a channel's slot sends `sunsubscribe` unasked: messages may
    be missed from then on, so `run` raises (a transient error: subscribe again)."""
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    subscription = ShardSubscription(redis, CHANNELS)
    await subscription.open()
    pubsub = subscription._pubsubs[0]
    try:
        reader = asyncio.create_task(subscription.run(lambda _: None))
        await asyncio.sleep(0.05)
        # (fakeredis cannot move a slot: the same reply, on this connection)
        await pubsub.sunsubscribe(CHANNELS[2])
        with pytest.raises(SubscriptionLostError) as err:
            await reader
        assert is_retryable(err.value)
    finally:
        await subscription.close()
        await redis.aclose()


def test_what_subscribing_again_can_fix() -> None:
    assert is_retryable(MovedError("3999 127.0.0.1:7001"))
    assert is_retryable(ResponseError("MOVED 3999 127.0.0.1:7001"))
    assert is_retryable(ResponseError("CLUSTERDOWN The cluster is down"))
    assert is_retryable(ConnectionError("reset"))
    assert not is_retryable(NoPermissionError("NOPERM no permissions to access a channel"))
    assert not is_retryable(ResponseError("ERR unknown command 'SSUBSCRIBE'"))
