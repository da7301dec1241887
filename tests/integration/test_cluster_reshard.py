"""A shard's slot moved key by key (`redis-cli --cluster reshard`'s way) under a live
call (issue 12). redurable's Functions reach keys they do not declare: the timer scan
declares the shard's timers and fires a workflow's run timeout in the workflow's own
keys. While the slot is half moved a call must answer TRYAGAIN before it reads or
writes anything (engine/lua/00_common.lua `slot_moving`), and the client retries it
until the slot has moved. Both halves are tried: the timers still on the source with
the rest moved (the call runs on the source: before, it removed the timer, then failed
on the workflow's keys, and the run never timed out), and the timers moved with the
rest still on the source (the call is sent to the target with ASK: before, it worked
there on keys the target did not have yet). Runs when REDURABLE_TEST_CLUSTER_URL names
a node of a cluster, else skips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from engine.calls import Call
from engine.resp_cluster import ClusterRespPool, key_slot
from sdk import Client
from tests.integration.test_cluster_mode import cluster_client, cluster_url

__all__ = ["cluster_client", "cluster_url"]

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Address = tuple[str, int]


async def _run(address: Address, *command: object) -> Any:
    async with Redis(host=address[0], port=address[1], decode_responses=True) as node:
        return await node.execute_command(*command)  # type: ignore[no-untyped-call]


async def _migrate(source: Address, target: Address, names: list[str]) -> None:
    for start in range(0, len(names), 10):  # redis-cli's default pipeline
        await _run(source, "MIGRATE", target[0], target[1], "", 0, 5000, "KEYS",
                   *names[start:start + 10])


async def _timeouts(address: Address, history: str, *, asking: bool = False) -> int:
    # Payloads are bytes: no decoding. ASKING reads a slot the node is importing.
    async with Redis(host=address[0], port=address[1],
                     single_connection_client=True) as node:
        if asking:
            await node.execute_command("ASKING")  # type: ignore[no-untyped-call]
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await node.execute_command(  # type: ignore[no-untyped-call]
            "XRANGE", history, "-", "+")
    return sum(1 for _, fields in entries
               if fields.get(b"type") == b"WorkflowExecutionTimedOut")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("moved_first", ["workflow", "timers"])
async def test_a_call_on_a_half_moved_slot_waits_and_lands_once(
    cluster_client: Client, moved_first: str,
) -> None:
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    keys = cluster_client.keys
    handle = await cluster_client.start_workflow(
        "Wait", id="half-moved", task_queue="nowhere",
        run_timeout=timedelta(milliseconds=300))
    shard = keys.shard("half-moved")
    history, timers = keys.history("half-moved"), keys.timers(shard)
    slot = key_slot(history)
    source = fast.owner_of(history)
    target = next(a for a in fast.primaries if a != source)
    source_id = await _run(source, "CLUSTER", "MYID")
    target_id = await _run(target, "CLUSTER", "MYID")
    in_slot: list[str] = await _run(source, "CLUSTER", "GETKEYSINSLOT", slot, 100_000)
    assert timers in in_slot and history in in_slot
    rest = [k for k in in_slot if k != timers]
    first = rest if moved_first == "workflow" else [timers]

    await _run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    await _run(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    moved = False
    fired: list[Any] = []

    async def scan() -> None:  # a worker's timer scan of this shard
        fired.extend(await cluster_client.store.call_many([Call(
            "rd_fire_timers", [timers], [keys.shard_prefix(shard), 10])]))

    try:
        await _migrate(source, target, first)
        await anyio.sleep(0.4)  # the run timeout is due
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(scan)
                await anyio.sleep(0.3)
                # Answered TRYAGAIN (retried by the client): nothing read or written
                # on either node, so no key exists on both, the timer is still set and
                # the run has not timed out.
                on_source = set(await _run(source, "CLUSTER", "GETKEYSINSLOT", slot,
                                           100_000))
                on_target = set(await _run(target, "CLUSTER", "GETKEYSINSLOT", slot,
                                           100_000))
                assert not on_source & on_target
                assert not fired
                if history in on_source:
                    assert await _timeouts(source, history) == 0
                else:
                    assert await _timeouts(target, history, asking=True) == 0
                # The rest moves the way redis-cli moves it: no BUSYKEY.
                await _migrate(source, target, sorted(on_source))
                for port in (target, source, *(a for a in fast.primaries
                                               if a not in (source, target))):
                    await _run(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
                moved = True
        assert fired and not isinstance(fired[0], Exception), fired
        assert int(fired[0][0]) == 1  # the run timeout, fired once, where it now is
        assert await _timeouts(target, history) == 1
        assert (await handle.describe()).status.name == "TIMED_OUT"
    finally:
        if not moved:  # leave the slot whole on the target for the next test
            left = await _run(source, "CLUSTER", "GETKEYSINSLOT", slot, 100_000)
            for name in left:
                await _run(source, "MIGRATE", target[0], target[1], "", 0, 5000,
                           "REPLACE", "KEYS", name)
            for port in (target, source, *(a for a in fast.primaries
                                           if a not in (source, target))):
                await _run(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
