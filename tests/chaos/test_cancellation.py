"""Cancellation inside a Redis call must never leave a reply behind for the next caller
(the redis-py hazard behind CVE-2023-28858/28859: a cancelled command's reply stayed in
the socket and was read as the answer to the next command on that connection).

Each test cancels calls at random instants, some while their reply is on its way
(another connection makes a blocked read return at about the cancel time), then checks
that every later call on the same client gets its own answer (an echo of a unique value:
ECHO, or for redis-py a script on the same key, which a cluster client can route).
Covered: the redis-py paths the project uses (plain commands, pipelines, a blocking
XREADGROUP, on the BlockingConnectionPool of Client.connect) and engine/resp.py (the
multiplexed connection and the blocking one)."""

from __future__ import annotations

import random

import anyio
import pytest
from redis.asyncio import Redis

from sdk import Client
from tests.conftest import async_redis

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.chaos]

ROUNDS = 40


async def _push_soon(redis: Redis, key: str, delay: float, stream: bool) -> None:
    await anyio.sleep(delay)
    if stream:
        await redis.xadd(key, {"v": "late"})
    else:
        await redis.rpush(key, "late")


#: ECHO through a script on a key: redis-py's RedisCluster cannot route a keyless ECHO
#: (in a pipeline), and the key sends the check to the node (and the connections) the
#: cancelled call used.
_ECHO = "return ARGV[1]"


async def _echo_check(redis: Redis, key: str, tag: str) -> None:
    for j in range(3):
        value = f"{tag}-{j}"
        assert await redis.eval(_ECHO, 1, key, value) == value.encode()


@pytest.mark.timeout(60)
async def test_redis_py_commands_cancelled_mid_reply(real_client: Client, redis_url: str) -> None:
    redis, rng = real_client.redis, random.Random(1)
    helper = async_redis(redis_url)
    key = f"{real_client.keys.prefix}:cancel:list"
    cancelled = 0
    try:
        for i in range(ROUNDS):
            delay = rng.uniform(0.0, 0.02)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_push_soon, helper, key, delay, False)
                with anyio.move_on_after(delay + rng.uniform(-0.002, 0.002)) as scope:
                    await redis.blpop([key], timeout=1)
            cancelled += scope.cancelled_caught
            await redis.delete(key)
            await _echo_check(redis, key, f"plain{i}")
            # A pipeline cancelled while its replies arrive.
            with anyio.move_on_after(rng.uniform(0.0, 0.003)):
                pipe = redis.pipeline(transaction=False)
                for n in range(200):
                    pipe.eval(_ECHO, 1, key, f"p{n}")
                await pipe.execute()
            await _echo_check(redis, key, f"pipe{i}")
    finally:
        await helper.aclose()
    assert cancelled > 0


@pytest.mark.timeout(60)
async def test_redis_py_blocking_xreadgroup_cancelled(real_client: Client, redis_url: str) -> None:
    redis, rng = real_client.redis, random.Random(2)
    helper = async_redis(redis_url)
    stream = f"{real_client.keys.prefix}:cancel:stream"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    try:
        for i in range(ROUNDS):
            delay = rng.uniform(0.0, 0.02)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_push_soon, helper, stream, delay, True)
                with anyio.move_on_after(delay + rng.uniform(-0.002, 0.002)):
                    await redis.xreadgroup("g", "c", {stream: ">"}, count=1, block=1000)
            await _echo_check(redis, stream, f"xread{i}")
    finally:
        await helper.aclose()


@pytest.mark.timeout(60)
async def test_resp_client_cancelled_mid_reply(real_client: Client, redis_url: str) -> None:
    fast = real_client.store.fast
    if fast is None:
        pytest.skip("no RESP fast path on this client")
    rng = random.Random(3)
    helper = async_redis(redis_url)
    stream = f"{real_client.keys.prefix}:cancel:fast"
    await real_client.redis.xgroup_create(stream, "g", id="0", mkstream=True)
    wrong: list[tuple[str, object]] = []

    async def echo(value: str) -> None:
        reply = await fast.execute("ECHO", value)
        if reply != value.encode():
            wrong.append((value, reply))

    try:
        for i in range(ROUNDS):
            # Multiplexed: many callers in flight, some cancelled at random instants;
            # each that finishes must get its own reply.
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    if rng.random() < 0.3:
                        async def cancelled_echo(v: str = f"x{i}-{n}") -> None:
                            with anyio.move_on_after(rng.uniform(0.0, 0.002)):
                                await echo(v)
                        tg.start_soon(cancelled_echo)
                    else:
                        tg.start_soon(echo, f"e{i}-{n}")
            # Blocking connection: cancelled while the entry arrives.
            delay = rng.uniform(0.0, 0.02)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_push_soon, helper, stream, delay, True)
                with anyio.move_on_after(delay + rng.uniform(-0.002, 0.002)):
                    await fast.execute_blocking(
                        "XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "BLOCK", 1000,
                        "STREAMS", stream, ">")
            reply = await fast.execute_blocking(
                "XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "BLOCK", 1,
                "STREAMS", stream, "0-0")  # our own pending entries: a list, never ECHO's
            assert reply is None or isinstance(reply, list), reply
            await echo(f"after{i}")
    finally:
        await helper.aclose()
    assert not wrong, wrong[:5]

