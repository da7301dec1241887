"""Dead-worker detection by presence subscription (sdk/worker/presence.py), on fakeredis."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.keys import Keys
from sdk import Client, Worker, activity, workflow
from sdk.worker import presence as _presence
from sdk.worker.presence import DeathWatch, PresenceHolder
from sdk.worker.task_entry import TaskEntry as _Task

pytestmark = pytest.mark.anyio

QUEUE = "q"


async def register(redis: Redis, keys: Keys, worker: str, presence: bool) -> None:
    await redis.zadd(keys.workers(QUEUE), {worker: 1})
    await redis.hset(keys.worker_info(QUEUE), worker, json.dumps({"presence": presence}))


@pytest.fixture
def redis() -> Redis:
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


async def test_a_worker_without_subscriber_is_dead_after_the_grace(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    keys = Keys("p", 4)
    await register(redis, keys, "alive", True)
    await register(redis, keys, "gone", True)
    await register(redis, keys, "legacy", False)  # no presence: the heartbeat decides
    holder = PresenceHolder(redis, keys, "alive")
    await holder.subscribe()
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []  # first silence starts the grace period
    await anyio.sleep(0.06)
    assert await watch.find_dead() == ["gone"]
    assert await watch.find_dead() == ["gone"]  # reported until forgotten
    await watch.forget("gone")
    assert await redis.zscore(keys.workers(QUEUE), "gone") is None
    assert await redis.hget(keys.worker_info(QUEUE), "gone") is None
    assert await watch.find_dead() == []


async def test_a_worker_that_subscribes_again_within_the_grace_lives(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    keys = Keys("p", 4)
    await register(redis, keys, "flaky", True)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []
    holder = PresenceHolder(redis, keys, "flaky")
    await holder.subscribe()
    await anyio.sleep(0.06)
    assert await watch.find_dead() == []
    await holder._close()  # the connection drops: the grace period starts over
    assert await watch.find_dead() == []


async def test_the_watcher_never_reports_itself(redis: Redis) -> None:
    keys = Keys("p", 4)
    await register(redis, keys, "me", True)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []
    await anyio.sleep(0.25)
    assert await watch.find_dead() == []


async def test_a_connection_error_is_not_a_server_without_pubsub(redis: Redis) -> None:
    """Subscribing again while Redis is away (a restart) must not turn presence off for
    good: the worker would stop subscribing while the others, which read its "presence"
    flag once, watch its empty channel and claim its running tasks."""
    keys = Keys("p", 4)
    holder = PresenceHolder(redis, keys, "w")
    server = redis.connection_pool.connection_kwargs["server"]
    server.connected = False
    with pytest.raises(RedisConnectionError):
        await holder.subscribe()
    assert holder.supported
    server.connected = True
    await holder.subscribe()
    assert holder.supported
    assert dict(await redis.pubsub_numsub(keys.worker_presence("w"))) == {
        keys.worker_presence("w").encode(): 1
    }
    await holder._close()


async def test_claimed_activities_wait_for_a_free_slot(fake_client: Client) -> None:
    """The claim limit is counted before the claim's round trip; slots filled meanwhile
    (the poller, the other claim loop) must not let claimed tasks run beyond
    max_concurrent_activities: the extra ones wait in the backlog (held, touched)."""

    @activity.defn
    async def idle() -> None:
        await anyio.sleep(10)

    worker = Worker(fake_client, task_queue=QUEUE, activities=[idle],
                    max_concurrent_activities=1, handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    stream = plumbing.activity_streams[0]
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1",
              b"attempt": b"1", b"activity_type": b"idle", b"input": b"\x90"}
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        activities.start([_Task(stream, "1-0", dict(fields))])  # the slot is taken
        activities.adopt(stream, [(b"2-0", dict(fields))])  # claimed in the meantime
        assert len(activities.running) == 1
        assert [t.msg_id for t in activities.backlog] == ["2-0"]
        assert plumbing.in_flight[stream] == {"1-0", "2-0"}
        tg.cancel_scope.cancel()


async def test_a_worker_that_stopped_advertising_presence_is_not_declared_dead(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presence can be given up while a worker runs (its ACL lost the channel: it beats
    on with "presence": false); a watcher that read the flag before must read it again
    before it takes an empty channel for a death and claims the worker's tasks."""
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    keys = Keys("p", 4)
    await register(redis, keys, "w", True)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []
    await register(redis, keys, "w", False)  # its next beat
    await anyio.sleep(0.06)
    assert await watch.find_dead() == []


async def test_workflow_tasks_run_outside_the_poller_are_retried_once(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection error in a claimed or eager batch: WorkflowTasks._process puts the
    unfinished tasks back in the backlog; they must be there once, not twice."""

    @workflow.defn
    class Noop:
        @workflow.run
        async def run(self) -> None:
            return None

    worker = Worker(fake_client, task_queue=QUEUE, workflows=[Noop], handle_signals=False)

    async def broken(calls: Any) -> Any:
        raise RedisConnectionError("connection lost")

    monkeypatch.setattr(worker.store, "call_many", broken)
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"epoch": b"1"}
    task = _Task(worker._plumbing.workflow_streams[0], "1-0", fields)
    await worker._workflow_tasks.run_now([task])
    assert worker._workflow_tasks.backlog == [task]


async def test_a_malformed_entry_handed_over_eagerly_is_dead_lettered(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The XREADGROUP inside an activity completion (or a workflow task completion)
    takes the stream's oldest new entry, whichever it is: a malformed one must be
    dead-lettered as the pollers do, not crash the worker (a KeyError in its task group)."""

    @workflow.defn
    class Noop:
        @workflow.run
        async def run(self) -> None:
            return None

    @activity.defn
    async def quick() -> None:
        return None

    worker = Worker(fake_client, task_queue=QUEUE, workflows=[Noop], activities=[quick],
                    handle_signals=False)
    plumbing = worker._plumbing
    wf_stream, act_stream = plumbing.workflow_streams[0], plumbing.activity_streams[0]
    sent: list[str] = []

    async def fake_call_many(calls: Any) -> Any:
        sent.extend(c.function for c in calls)
        return [
            [b"ok", b"completed", [wf_stream.encode(), b"5-0", [b"junk", b"1"]]]
            if c.function == "rd_act_complete" else 1
            for c in calls
        ]

    monkeypatch.setattr(worker.store, "call_many", fake_call_many)
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        worker._activity_tasks.completions.append(worker.store.act_complete_call(
            "w", "r", "1", "1", "1-0", act_stream, result=b"\xc0",
            eager_consumer=worker.identity, eager_task_queue=QUEUE))
        await worker._activity_tasks.flush_completions()
        # An eager activity task with a commit: the same.
        task = _Task(wf_stream, "2-0", {b"workflow_id": b"w", b"run_id": b"r", b"epoch": b"1"})
        call = worker.store.wft_complete_call(
            "w", "r", "1", None, "2-0", wf_stream, worker.identity, 0, "", [])
        reply = [b"ok", 3, b"3-0", 0, 0, [[act_stream.encode(), b"6-0", [b"junk", b"1"]]]]
        worker._workflow_tasks._finish(task, call, reply)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert sent.count("rd_dead_letter") == 2
    assert not worker._activity_tasks.running


async def test_nobody_is_dead_while_our_own_subscription_was_just_lost(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server restart drops every worker's subscription at once: the watcher, whose
    own one went too, gives the others REGAIN_GRACE_S to subscribe again."""
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    monkeypatch.setattr(_presence, "REGAIN_GRACE_S", 0.3)
    keys = Keys("p", 4)
    await register(redis, keys, "other", True)
    mine = PresenceHolder(redis, keys, "me")
    await mine.subscribe()
    watch = DeathWatch(redis, keys, QUEUE, "me", mine)
    mine.lost_at = time.monotonic()  # as hold() records a lost connection
    assert await watch.find_dead() == []
    await anyio.sleep(0.1)
    assert await watch.find_dead() == []  # silent long enough, but within the grace
    await anyio.sleep(0.3)
    assert await watch.find_dead() == []  # the grace is over: silence counts afresh
    await anyio.sleep(0.06)
    assert await watch.find_dead() == ["other"]


async def test_a_subscription_cut_on_the_server_side_is_renewed(redis: Redis) -> None:
    """The server shows no subscriber on our own channel although we hold one: we
    subscribe again, and declare nobody dead meanwhile."""
    keys = Keys("p", 4)
    await register(redis, keys, "other", True)
    mine = PresenceHolder(redis, keys, "me")  # never subscribed: the server sees none
    watch = DeathWatch(redis, keys, QUEUE, "me", mine)
    assert await watch.find_dead() == []
    assert mine._resubscribe
    async with anyio.create_task_group() as tg:
        tg.start_soon(mine.hold)
        with anyio.fail_after(5):
            while not (await redis.pubsub_numsub(mine.channel))[0][1]:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_each_worker_checks_its_share_of_the_fleet_rate(redis: Redis) -> None:
    """K workers check about WATCHERS times per CHECK_INTERVAL_S together: each one's
    period grows with the fleet, so a worker's idle cost does not."""
    keys = Keys("p", 4)
    holders = []
    for i in range(19):
        await register(redis, keys, f"w{i}", True)
        holder = PresenceHolder(redis, keys, f"w{i}")
        await holder.subscribe()
        holders.append(holder)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert watch.next_check_in(0.5) == _presence.LONE_CHECK_S  # nothing seen yet
    assert await watch.find_dead() == []
    assert watch.watched == 19
    fleet_period = _presence.CHECK_INTERVAL_S * 20 / _presence.WATCHERS
    assert watch.next_check_in(0.5) == pytest.approx(fleet_period)
    assert watch.next_check_in(0.0) == pytest.approx(fleet_period / 2)


async def test_a_silent_channel_is_confirmed_after_the_grace_not_a_fleet_period(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.05)
    keys = Keys("p", 4)
    for i in range(19):
        await register(redis, keys, f"gone{i}", True)  # nobody subscribed: all silent
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []
    assert watch.next_check_in(0.99) <= 0.05
    await anyio.sleep(watch.next_check_in(0.99))
    assert len(await watch.find_dead()) == 19


async def test_a_worker_that_gave_presence_up_is_not_awaited(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_presence, "DEAD_AFTER_S", 0.01)
    keys = Keys("p", 4)
    await register(redis, keys, "quitter", True)
    watch = DeathWatch(redis, keys, QUEUE, "me")
    assert await watch.find_dead() == []  # silent: confirmation pending
    await register(redis, keys, "quitter", False)
    await anyio.sleep(0.02)
    assert await watch.find_dead() == []
    # Its silence says nothing now: back to the fleet period, not a tight loop.
    assert watch.next_check_in(0.5) >= _presence.CHECK_INTERVAL_S
