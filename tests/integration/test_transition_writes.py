"""What the workflow task completions' fewer writes (docs/benchmarks.md "Fewer
redis.calls per transition") must leave exactly as before: the event counter in the
workflow hash (written once per completion instead of once per event), no activity
fields of ended activities (a one-write step removes them with the completion's
closing HDEL), no timer of an ended activity (one ZREM of only the timers it may have
armed), and a history that replays."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import anyio
import pytest
from redis.exceptions import ResponseError

from engine import commands as cmd
from engine.calls import Arg
from engine.machine import LOGIC_FLAGS
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


async def test_a_command_list_that_cannot_apply_writes_nothing(client: Client) -> None:
    """A completion whose activity options are not JSON fails before it writes anything
    (before: the WorkflowTaskCompleted and the timer before it were written, then the
    call failed half way)."""
    await client.start_workflow("W", id="bad-opts", task_queue="q")
    store, keys = client.store, client.keys
    await store.ensure_groups("q")
    stream = keys.workflow_tasks(keys.shard("bad-opts"), "q")
    [(_, msg_id, fields)] = await store.read_group("test", [stream], 1, 10)
    epoch, run_id = fields[b"epoch"].decode(), fields[b"run_id"].decode()
    started = store.parse_wft_start(await store.call(store.wft_start_call(
        "bad-opts", run_id, epoch, msg_id, stream, None, 10_000)))
    assert started is not None
    wf = keys.workflow("bad-opts")
    before = (await client.redis.xlen(keys.history("bad-opts")),
              await client.redis.hget(wf, "next_event_id"))
    call = store.wft_complete_call(
        "bad-opts", run_id, epoch, started.token, msg_id, stream, "test", started.now_ms,
        LOGIC_FLAGS, [cmd.StartTimer(1, 60_000)])
    bad: list[Arg] = ["ActivityTaskScheduled", 5, "activity_id", 2, "activity_type", "a",
                      "input", "", "task_queue", "q", "options", "{not json"]
    # (fakeredis lets its cjson's Python error through instead of an error reply.)
    with pytest.raises((ResponseError, ValueError)):
        await store.call(dataclasses.replace(call, args=[*call.args, *bad]))
    after = (await client.redis.xlen(keys.history("bad-opts")),
             await client.redis.hget(wf, "next_event_id"))
    assert after == before
    assert await client.redis.hget(wf, "timer:1") is None


#: Commands parse_commands let through that fail half way through the apply: after
#: the completion's first events were appended with deferred ids (the counter in the
#: hash is written only by the completion's closing HSET), so the history was left
#: ahead of the counter and the next event took an id already in it.
_FAILS_HALF_WAY: dict[str, list[Arg]] = {
    # What RetryPolicy(backoff_coefficient=math.inf) (or nan, which passes its
    # `< 1` check) sends: cjson decodes Infinity, and cannot encode it back.
    "options_not_finite": ["ActivityTaskScheduled", 5, "activity_id", "2", "activity_type",
                           "a", "input", "", "task_queue", "q", "options",
                           '{"retry":{"backoff_coefficient":Infinity}}'],
    "duration_nan": ["TimerStarted", 2, "timer_id", "2", "duration_ms", "nan"],
    "field_without_value": ["TimerStarted", 3, "timer_id", "2", "duration_ms", "5", "extra"],
}


@pytest.mark.parametrize("bad", sorted(_FAILS_HALF_WAY))
async def test_a_command_that_fails_half_way_is_refused_before_any_write(
    real_client: Client, bad: str,
) -> None:
    client = real_client
    wf_id = f"half-{bad}"
    await client.start_workflow("W", id=wf_id, task_queue="q")
    store, keys = client.store, client.keys
    await store.ensure_groups("q")
    stream = keys.workflow_tasks(keys.shard(wf_id), "q")
    [(_, msg_id, fields)] = await store.read_group("test", [stream], 1, 10)
    epoch, run_id = fields[b"epoch"].decode(), fields[b"run_id"].decode()
    started = store.parse_wft_start(await store.call(store.wft_start_call(
        wf_id, run_id, epoch, msg_id, stream, None, 10_000)))
    assert started is not None
    wf, history = keys.workflow(wf_id), keys.history(wf_id)
    before = (await client.redis.xlen(history), await client.redis.hget(wf, "next_event_id"))
    call = store.wft_complete_call(
        wf_id, run_id, epoch, started.token, msg_id, stream, "test", started.now_ms,
        LOGIC_FLAGS, [cmd.StartTimer(1, 60_000)])
    with pytest.raises(ResponseError):
        await store.call(dataclasses.replace(call, args=[*call.args, *_FAILS_HALF_WAY[bad]]))
    after = (await client.redis.xlen(history), await client.redis.hget(wf, "next_event_id"))
    assert after == before
    # The task's completion without it lands, its events numbered on from the history
    # (they took ids already in it).
    assert (await store.call(call))[0] in (b"ok", "ok")
    entries: Any = await client.redis.xrange(history)
    ids = [int(fields[b"id"]) for _, fields in entries]
    assert ids == list(range(1, len(ids) + 1))


async def test_a_negative_field_count_is_refused(real_client: Client) -> None:
    """n_fields -1 left parse_commands' walk where it was: a loop for ever, its list
    growing, the server busy (before the count was checked)."""
    client = real_client
    await client.start_workflow("W", id="neg-count", task_queue="q")
    store, keys = client.store, client.keys
    await store.ensure_groups("q")
    stream = keys.workflow_tasks(keys.shard("neg-count"), "q")
    [(_, msg_id, fields)] = await store.read_group("test", [stream], 1, 10)
    epoch, run_id = fields[b"epoch"].decode(), fields[b"run_id"].decode()
    started = store.parse_wft_start(await store.call(store.wft_start_call(
        "neg-count", run_id, epoch, msg_id, stream, None, 10_000)))
    assert started is not None
    call = store.wft_complete_call(
        "neg-count", run_id, epoch, started.token, msg_id, stream, "test", started.now_ms,
        LOGIC_FLAGS, [])
    with pytest.raises(ResponseError, match="malformed command list"):
        await store.call(dataclasses.replace(call, args=[*call.args, "X", -1]))
