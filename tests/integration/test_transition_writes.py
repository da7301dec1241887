"""What the workflow task completions' fewer writes (docs/benchmarks.md "Fewer
redis.calls per transition") must leave exactly as before: the event counter in the
workflow hash (written once per completion instead of once per event), no activity
fields of ended activities (a one-write step removes them with the completion's
closing HDEL), no timer of an ended activity (one ZREM of only the timers it may have
armed), and a history that replays."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from sdk import Client, activity, workflow
from sdk.testing import Replayer, WorkflowHistory, running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
TQ = "transition-writes"


@activity.defn
async def beat(x: int) -> int:
    activity.heartbeat(x)
    return x + 1


@workflow.defn
class Mixed:
    """Activities with every timeout (their timers armed or not), a marker, a signal;
    then it waits for `finish` with the run open, so its state can be read."""

    def __init__(self) -> None:
        self.done = 0
        self.finish = False
        self.pokes = 0

    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        if workflow.patched("p1"):
            total += 100
        for _ in range(n):
            total = await workflow.execute_activity(
                beat, total,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(seconds=60),
                schedule_to_start_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=30))
            self.done += 1
        await workflow.wait_condition(lambda: self.finish)
        return total + self.pokes

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.signal
    def stop(self) -> None:
        self.finish = True

    @workflow.query
    def steps(self) -> int:
        return self.done


async def _check_state(client: Client, wf_id: str) -> None:
    r = client.redis
    history = client.keys.history(wf_id)
    fields = await r.hgetall(client.keys.workflow(wf_id))
    names = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
    assert int(names["next_event_id"]) == await r.xlen(history) + 1
    assert not [n for n in names if n.startswith("act")]
    timers = await r.zrange(client.keys.timers(client.keys.shard(wf_id)), 0, -1)
    members = [t.decode() if isinstance(t, bytes) else str(t) for t in timers]
    assert [m for m in members if m.endswith("|" + wf_id)] == []


@pytest.mark.timeout(60)
async def test_completions_keep_the_counter_and_leave_nothing_of_ended_activities(
    client: Client,
) -> None:
    n = 4
    async with running_worker(client, task_queue=TQ, workflows=[Mixed], activities=[beat]):
        handle = await client.start_workflow(Mixed.run, n, id="mixed-1", task_queue=TQ)
        await handle.signal(Mixed.poke)
        with anyio.fail_after(30):
            while await handle.query(Mixed.steps) < n:
                await anyio.sleep(0.02)
        await handle.signal(Mixed.poke)
        # Settled: the last signal's workflow task has completed (nothing due or running).
        with anyio.fail_after(30):
            while (await client.redis.hget(client.keys.workflow(handle.id), "wft")) not in (
                    b"none", "none"):
                await anyio.sleep(0.02)
        await _check_state(client, handle.id)
        await handle.signal(Mixed.stop)
        assert await handle.result() == 100 + n + 2
    events = [e async for e in handle.fetch_history()]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    await Replayer(workflows=[Mixed]).replay_workflow(WorkflowHistory(handle.id, events))
