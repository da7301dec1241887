"""docs/scaling.md's KEDA example against a real stream (Redis 7.0+): the streams and
consumer group it names are the workers', and XINFO GROUPS reports `lag` (queued, not
delivered) and `pending` (delivered, not acknowledged) as the page says, through
queueing, delivery and completion, never a NULL lag."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.keys import GROUP, Keys
from sdk import Client, activity, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio
DOC = Path(__file__).parents[2] / "docs" / "scaling.md"
#: What KEDA's redis-streams scaler reads of the group (lagCount / pendingEntriesCount).
XINFO_FIELDS = {"name", "consumers", "pending", "last-delivered-id", "entries-read", "lag"}


@activity.defn
async def pack(n: int) -> int:
    return n


@workflow.defn
class Packing:
    @workflow.run
    async def run(self, n: int) -> int:
        return int(await workflow.execute_activity(pack, n, start_to_close_timeout=timedelta(
            seconds=10)))


def test_the_example_names_the_workers_streams_and_group() -> None:
    text = DOC.read_text()
    example = text[text.index("apiVersion: keda.sh/v1alpha1"):]
    streams = set(re.findall(r'stream: "([^"]+)"', example))
    keys = Keys("redurable", 4)
    expected = {keys.activity_tasks(s, "orders") for s in range(4)}
    expected.add(keys.workflow_tasks(0, "orders"))
    assert streams == expected
    assert set(re.findall(r"consumerGroup: (\w+)", example)) == {GROUP}


async def groups(client: Client, streams: list[str]) -> list[dict[str, Any]]:
    out = []
    for stream in streams:
        for group in await client.redis.xinfo_groups(stream):
            if group["name"] in (GROUP, GROUP.encode()):
                out.append(group)
    return out


async def test_xinfo_groups_lag_and_pending(real_client: Client) -> None:
    info: Any = await real_client.redis.info("server")
    if tuple(int(p) for p in str(info["redis_version"]).split(".")[:2]) < (7, 0):
        pytest.skip("XINFO GROUPS reports lag from Redis 7.0")
    keys, queue = real_client.keys, "scale"
    wf_streams = [keys.workflow_tasks(s, queue) for s in range(keys.shards)]
    act_streams = [keys.activity_tasks(s, queue) for s in range(keys.shards)]
    await real_client.store.ensure_groups(queue)

    # Queued, no worker: the backlog is the lag; nothing is pending.
    for i in range(5):
        await real_client.start_workflow(Packing.run, i, id=f"s-{i}", task_queue=queue)
    wf = await groups(real_client, wf_streams)
    assert len(wf) == keys.shards and all(set(g) >= XINFO_FIELDS for g in wf)
    assert sum(g["lag"] for g in wf) == 5
    assert sum(g["pending"] for g in wf) == 0

    # Delivered to a consumer, not acknowledged: pending, no longer lag.
    busy, before = next((s, g) for s, g in zip(wf_streams, wf, strict=True) if g["lag"])
    delivered: Any = await real_client.redis.xreadgroup(GROUP, "probe", {busy: ">"}, count=1)
    after = (await groups(real_client, [busy]))[0]
    assert (after["pending"], after["lag"]) == (1, before["lag"] - 1)
    # Handed back to the queue, as a stopping worker does: queued again, not pending.
    msg_id = delivered[0][1][0][0].decode()
    await real_client.store.call(real_client.store.release_call(busy, msg_id))
    again = (await groups(real_client, [busy]))[0]
    assert (again["pending"], again["lag"]) == (0, before["lag"])

    # Workers run everything: each entry is acknowledged and deleted, the lag is 0
    # (never NULL: only delivered entries are deleted) and nothing is pending.
    async with running_worker(real_client, task_queue=queue, workflows=[Packing],
                              activities=[pack]):
        for i in range(5):
            assert await real_client.get_workflow_handle(f"s-{i}").result() == i
    for g in await groups(real_client, wf_streams + act_streams):
        assert g["lag"] == 0 and g["pending"] == 0, g
    for stream in wf_streams + act_streams:
        assert await real_client.redis.xlen(stream) == 0
