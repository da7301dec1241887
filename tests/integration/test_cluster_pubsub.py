"""Close and update notices on a Redis Cluster are sharded pub/sub (issue 12): the Lua
`SPUBLISH`es on the shard's channel, the client's watchers `SSUBSCRIBE` on the master
serving each channel's slot, nothing crosses the cluster bus, and a slot migration that
moves a channel away is followed (by the close watcher and by a worker's presence).
Runs when REDURABLE_TEST_CLUSTER_URL names a node of a cluster (`python -m scripts.cluster
up`), else skips."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from engine.resp_cluster import ClusterRespPool, key_slot
from scripts.cluster import move_slot
from sdk import Client, TerminatedError, WorkflowFailureError
from sdk.client.handle import WorkflowHandle
from sdk.testing import running_worker
from sdk.worker.presence import PresenceHolder
from tests.integration.test_cluster_mode import cluster_client, cluster_url
from tests.integration.update_workflows import Counter

__all__ = ["cluster_client", "cluster_url"]

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Address = tuple[str, int]


async def _run(address: Address, *command: object) -> Any:
    """One command on one node."""
    async with Redis(host=address[0], port=address[1], decode_responses=True) as node:
        return await node.execute_command(*command)  # type: ignore[no-untyped-call]


async def _bus_publishes(nodes: list[Address]) -> int:
    """Pub/sub messages all nodes sent over the cluster bus (PUBLISH forwarding)."""
    total = 0
    for address in nodes:
        info: str = await _run(address, "CLUSTER", "INFO")
        for line in info.splitlines():
            if line.startswith("cluster_stats_messages_publish_sent:"):
                total += int(line.split(":")[1])
    return total


async def _shard_subscribers(address: Address, channel: str) -> int:
    reply = await _run(address, "PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def _terminated(handle: WorkflowHandle) -> None:
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert isinstance(err.value.__cause__, TerminatedError)


async def test_closes_wake_waiters_without_crossing_the_cluster_bus(
    cluster_client: Client,
) -> None:
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    keys = cluster_client.keys
    handles = [await cluster_client.start_workflow(
        "Wait", id=f"bus-{n}", task_queue="nowhere") for n in range(20)]
    before = await _bus_publishes(fast.primaries)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for handle in handles:
                tg.start_soon(_terminated, handle)
            await anyio.sleep(0.3)  # every waiter subscribed
            # Each close channel has the watcher's one subscription, on its slot's master.
            for shard in range(keys.shards):
                channel = keys.closed_channel(shard)
                assert await _shard_subscribers(fast.owner_of(channel), channel) == 1
            for handle in handles:
                await handle.terminate("done")
    # PUBLISH sent each close to every other node (20 x 2 here); SPUBLISH to none.
    assert await _bus_publishes(fast.primaries) == before


async def _move_slot(slot: int, source: Address, target: Address, nodes: list[Address]) -> None:
    ports = [port for _, port in nodes]
    await anyio.to_thread.run_sync(move_slot, slot, source[1], target[1], ports)


@pytest.mark.timeout(60)
async def test_a_waiter_follows_its_close_channel_to_another_master(
    cluster_client: Client,
) -> None:
    """The master that loses the slot drops the watcher's subscription (`sunsubscribe`):
    the watcher re-reads the slot map, subscribes on the new owner, and the close
    published there wakes `result()`."""
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    keys = cluster_client.keys
    wf_id = "moving-" + uuid.uuid4().hex[:6]
    channel = keys.closed_channel(keys.shard(wf_id))
    slot = key_slot(channel)
    source = fast.owner_of(channel)
    target = next(a for a in fast.primaries if a != source)
    nodes = list(fast.primaries)
    handle = await cluster_client.start_workflow("Wait", id=wf_id, task_queue="nowhere")
    watcher = cluster_client.close_watcher
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_terminated, handle)
                await anyio.sleep(0.3)
                assert await _shard_subscribers(source, channel) == 1
                await _move_slot(slot, source, target, nodes)
                while watcher.resubscribed == 0:
                    await anyio.sleep(0.02)
                while await _shard_subscribers(target, channel) != 1:
                    await anyio.sleep(0.02)
                await handle.terminate("after the move")
    finally:
        await _move_slot(slot, target, source, nodes)


@pytest.mark.timeout(60)
async def test_a_worker_s_presence_follows_its_channel_to_another_master(
    cluster_client: Client,
) -> None:
    """After the presence channel's slot moved, subscribing again on the master the
    cluster client still has for it gets MOVED: the holder re-reads the slot map and
    subscribes on the new owner (it took MOVED for "no pub/sub here" and gave presence
    up before)."""
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    holder = PresenceHolder(cluster_client.redis, cluster_client.keys,
                            "w-" + uuid.uuid4().hex[:6])
    channel = holder.channel
    slot = key_slot(channel)
    source = fast.owner_of(channel)
    target = next(a for a in fast.primaries if a != source)
    nodes = list(fast.primaries)
    await holder.subscribe()
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.hold)
                assert await _shard_subscribers(source, channel) == 1
                await _move_slot(slot, source, target, nodes)
                holder.request_resubscribe()  # as DeathWatch does on seeing no subscriber
                while await _shard_subscribers(target, channel) != 1:
                    assert holder.supported
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    finally:
        await _move_slot(slot, target, source, nodes)


@pytest.mark.timeout(60)
async def test_update_waiters_wake_on_sharded_notices(cluster_client: Client) -> None:
    """An update's stage is announced on its shard's updates channel (SPUBLISH): the
    update watcher's SSUBSCRIBE on the channel's master wakes `result()`; the updates
    channels each have one subscription, on their slots' masters."""
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    keys = cluster_client.keys
    queue = "u-" + uuid.uuid4().hex[:6]
    async with running_worker(cluster_client, task_queue=queue, workflows=[Counter]):
        handles = [await cluster_client.start_workflow(Counter.run, id=f"upd-{n}",
                                                       task_queue=queue) for n in range(6)]
        with anyio.fail_after(30):
            # `bump` sleeps on a timer first: the result comes after the update was
            # announced accepted, so the waiter waits on a notice.
            assert [await h.execute_update(Counter.bump, 0.05) for h in handles] == [1] * 6
            for shard in range(keys.shards):
                channel = keys.updates_channel(shard)
                assert await _shard_subscribers(fast.owner_of(channel), channel) == 1
            for h in handles:
                await h.signal(Counter.finish)
            assert [await h.result() for h in handles] == [1] * 6
