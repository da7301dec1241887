"""Suspects: tasks delivered more than once (they went down with a worker before, maybe
what kills workers) are claimed and run one at a time, into empty hands only, so that a
healthy task is not dead-lettered with a poison one (sdk/worker/liveness.py,
sdk/worker/activity_tasks.py, engine/lua/50_claim.lua)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from sdk import Client, Worker, activity, workflow
from sdk.worker.task_entry import TaskEntry as _Task

pytestmark = pytest.mark.anyio

QUEUE = "q"

async def test_suspects_are_claimed_one_at_a_time(fake_client: Client) -> None:
    """rd_claim_from leaves entries already delivered more than once (suspects: they
    went down with a worker before) pending on the dead consumer beyond max_suspects."""
    from engine.keys import GROUP

    store, keys = fake_client.store, fake_client.keys
    await store.ensure_groups(QUEUE)
    stream = keys.activity_tasks(0, QUEUE)
    redis = fake_client.redis
    fresh = await redis.xadd(stream, {"n": "1"})
    twice = await redis.xadd(stream, {"n": "2"})
    await redis.xreadgroup(GROUP, "dead", {stream: ">"}, count=2)
    await redis.xclaim(stream, GROUP, "dead", 0, [twice])  # its second delivery
    claimed, more, suspects = await store.claim_from_consumer(
        stream, 0, "dead", "me", 5, max_suspects=0
    )
    assert [sid for sid, _ in claimed] == [fresh] and more and suspects == set()
    claimed, more, suspects = await store.claim_from_consumer(
        stream, 0, "dead", "me", 5, max_suspects=1
    )
    assert [sid for sid, _ in claimed] == [twice] and not more and suspects == {twice}


@activity.defn
async def instant() -> None:
    return None


async def test_a_worker_holds_one_suspect_at_a_time(fake_client: Client) -> None:
    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant], handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    act, wf = plumbing.activity_streams[0], plumbing.workflow_streams[0]
    assert activities.suspect_room(act) == 1
    assert worker._workflow_tasks.suspect_room(wf) == 1  # the same slot (below)
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1", b"attempt": b"1",
              b"activity_type": b"instant", b"input": fake_client.codec.encode([])}
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        activities.adopt(act, [(b"5-0", dict(fields))], {b"5-0"})
        assert activities.suspect == (act, "5-0") and activities.suspect_room(act) == 0
        with anyio.fail_after(5):
            while activities.suspect is not None:  # `instant` returns at once
                await anyio.sleep(0.01)
        assert activities.suspect_room(act) == 1 and not activities.running
        tg.cancel_scope.cancel()


async def test_a_suspect_waits_for_the_other_claimed_tasks(fake_client: Client) -> None:
    """Claimed with workflow tasks of the same dead worker, a suspect activity starts
    only once they are done: if it kills the worker, they do not go down with it."""
    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant], handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    act = plumbing.activity_streams[0]
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1", b"attempt": b"1",
              b"activity_type": b"instant", b"input": fake_client.codec.encode([])}
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        plumbing.claimed_in_flight = 1  # a claimed workflow task still running
        activities.adopt(act, [(b"7-0", dict(fields))], {b"7-0"})
        await anyio.sleep(0.1)
        assert not activities.running and activities.suspect == (act, "7-0")
        plumbing.claimed_in_flight = 0  # it is done
        with anyio.fail_after(5):
            while activities.suspect is not None:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_idle_claims_take_suspects_one_at_a_time_too(fake_client: Client) -> None:
    """The idle claim (a dead worker's entries idle past the liveness timeout, the
    fallback for a death presence did not show in time) took every entry at once,
    suspects included: a crashing activity and a healthy one that went down with it
    twice were started together, killed together a third time, and the healthy one was
    dead-lettered as a crash (the poison scenario under load). Now suspects are taken
    one at a time there too, the others left pending on the dead consumer."""
    from engine.keys import GROUP

    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant],
                    handle_signals=False, liveness_timeout=0.05, max_deliveries=3)
    activities, plumbing, redis = worker._activity_tasks, worker._plumbing, fake_client.redis
    await fake_client.store.ensure_groups(QUEUE)
    act = plumbing.activity_streams[0]
    fields: dict[Any, Any] = {b"workflow_id": b"w", b"run_id": b"r", b"attempt": b"1",
              b"activity_type": b"instant", b"input": fake_client.codec.encode([])}
    ids: list[Any] = [await redis.xadd(act, {**fields, b"activity_id": str(n).encode()})
                      for n in (1, 2)]
    await redis.xreadgroup(GROUP, "gone", {act: ">"})
    await redis.xclaim(act, GROUP, "gone", 0, ids)  # went down with a worker once
    await anyio.sleep(0.1)  # idle past the liveness timeout
    started: list[str] = []
    activities.start = lambda tasks: started.extend(t.msg_id for t in tasks)  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        await worker.liveness.claim_from_dead()
        assert activities.suspect == (act, ids[0].decode())
        pending: Any = await redis.xpending_range(act, GROUP, "-", "+", 10)
        assert [(p["message_id"], p["consumer"]) for p in pending] == [
            (ids[0], worker.identity.encode()), (ids[1], b"gone")]
        assert pending[1]["times_delivered"] == 2  # not counted as delivered again
        await worker.liveness.claim_from_dead()  # our suspect still runs: none taken
        assert [p["consumer"] for p in await redis.xpending_range(
            act, GROUP, "-", "+", 10)] == [worker.identity.encode(), b"gone"]
        with anyio.fail_after(5):
            while not started:
                await anyio.sleep(0.01)
        assert started == [ids[0].decode()]
        tg.cancel_scope.cancel()


async def test_the_death_watch_and_the_idle_claim_share_one_suspect(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each claim loop asked suspect_room, then claimed during a round trip: both saw
    room for one, claimed a suspect each, and started the two together."""
    from engine.keys import GROUP

    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant],
                    handle_signals=False, liveness_timeout=0.05, max_deliveries=3)
    activities, plumbing, redis = worker._activity_tasks, worker._plumbing, fake_client.redis
    store = fake_client.store
    await store.ensure_groups(QUEUE)
    act = plumbing.activity_streams[0]
    fields: dict[Any, Any] = {b"workflow_id": b"w", b"run_id": b"r", b"attempt": b"1",
              b"activity_type": b"instant", b"input": fake_client.codec.encode([])}
    for n, consumer in enumerate(("hung", "dead")):  # each went down with a worker once
        sid = await redis.xadd(act, {**fields, b"activity_id": str(n).encode()})
        await redis.xreadgroup(GROUP, consumer, {act: ">"}, count=1)
        await redis.xclaim(act, GROUP, consumer, 0, [sid])
        if consumer == "hung":
            await anyio.sleep(0.1)  # idle past the liveness timeout (the dead's is not)
    slow_claim = store.claim_from_consumer

    async def claim_from_consumer(*args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(0.1)  # a slow round trip: the idle claim runs meanwhile
        return await slow_claim(*args, **kwargs)

    monkeypatch.setattr(store, "claim_from_consumer", claim_from_consumer)
    activities.start = lambda tasks: None  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        async with anyio.create_task_group() as claims:
            claims.start_soon(worker.liveness.claim_all_of, "dead")
            await anyio.sleep(0.02)
            claims.start_soon(worker.liveness.claim_from_dead)
        held: Any = await redis.xpending_range(act, GROUP, "-", "+", 10,
                                               consumername=worker.identity)
        assert len(held) == 1
        tg.cancel_scope.cancel()


async def test_a_suspect_waits_for_claimed_malformed_entries_to_be_dead_lettered(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed entry claimed with a suspect is dead-lettered in a round trip of its
    own: the suspect started meanwhile, killed the worker, and the entry was claimed
    again and again until it was dead-lettered as a crash, not as malformed."""
    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant], handle_signals=False)
    activities, plumbing, store = worker._activity_tasks, worker._plumbing, fake_client.store
    act = plumbing.activity_streams[0]
    fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1", b"attempt": b"1",
              b"activity_type": b"instant", b"input": fake_client.codec.encode([])}
    lettered: list[int] = []
    call_many = store.call_many

    async def slow_call_many(calls: Any) -> Any:
        await anyio.sleep(0.2)
        lettered.append(len(calls))
        return await call_many(calls)

    monkeypatch.setattr(store, "call_many", slow_call_many)
    started_after: list[list[int]] = []
    activities.start = lambda tasks: started_after.append(list(lettered))  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        activities.adopt(act, [(b"1-0", {b"workflow_id": b"m"}), (b"2-0", dict(fields))],
                         {b"2-0"})
        with anyio.fail_after(5):
            while not started_after:
                await anyio.sleep(0.01)
        assert started_after == [[1]]  # the suspect started once the letter was written
        tg.cancel_scope.cancel()


async def test_a_suspect_is_claimed_into_empty_hands_only(fake_client: Client) -> None:
    """A suspect claimed with other entries waited for them, but its delivery was counted
    already: if one of them is the poison (delivered once: not a suspect), it killed the
    worker, and the suspect, healthy, was charged one more delivery towards the dead
    letters. A suspect is now left where it is until we hold no other claimed entry."""
    from engine.keys import GROUP

    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant],
                    handle_signals=False, liveness_timeout=0.05, max_deliveries=3)
    activities, plumbing, redis = worker._activity_tasks, worker._plumbing, fake_client.redis
    await fake_client.store.ensure_groups(QUEUE)
    act = plumbing.activity_streams[0]
    fields: dict[Any, Any] = {b"workflow_id": b"w", b"run_id": b"r", b"attempt": b"1",
                              b"activity_type": b"instant",
                              b"input": fake_client.codec.encode([])}
    healthy: Any = await redis.xadd(act, {**fields, b"activity_id": b"1"})
    await redis.xreadgroup(GROUP, "dead", {act: ">"})
    await redis.xclaim(act, GROUP, "dead", 0, [healthy])  # twice (a stale claim)
    poison: Any = await redis.xadd(act, {**fields, b"activity_id": b"2"})
    await redis.xreadgroup(GROUP, "dead", {act: ">"})  # once
    started: list[_Task] = []
    activities.start = started.extend  # type: ignore[method-assign,assignment]

    async def consumers() -> list[tuple[Any, Any, int]]:
        pending: Any = await redis.xpending_range(act, GROUP, "-", "+", 10)
        return [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending]

    me = worker.identity.encode()
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        assert not await worker.liveness.claim_all_of("dead")
        assert await consumers() == [(healthy, b"dead", 2), (poison, me, 2)]
        assert not await worker.liveness.claim_all_of("dead")  # the other still runs
        assert await consumers() == [(healthy, b"dead", 2), (poison, me, 2)]
        assert [t.msg_id for t in started] == [poison.decode()]
        plumbing.claimed_done(started)  # the poison's attempt is over (here it returned)
        assert await worker.liveness.claim_all_of("dead")
        assert await consumers() == [(healthy, me, 3), (poison, me, 2)]
        assert activities.suspect == (act, healthy.decode())
        tg.cancel_scope.cancel()


async def test_suspects_wait_for_claimed_tasks_a_bounded_time(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No suspect is claimed while other claimed tasks are held, for SUSPECT_WAIT_S at
    most: a long activity claimed must not hold every dead worker's suspects back."""
    from sdk.worker import activity_tasks

    monkeypatch.setattr(activity_tasks, "SUSPECT_WAIT_S", 0.1)
    worker = Worker(fake_client, task_queue=QUEUE, activities=[instant], handle_signals=False)
    activities, plumbing = worker._activity_tasks, worker._plumbing
    act = plumbing.activity_streams[0]
    assert activities.suspect_room(act) == 1
    plumbing.claimed_in_flight = 1
    assert activities.suspect_room(act) == 0
    await anyio.sleep(0.15)
    assert activities.suspect_room(act) == 1
    plumbing.claimed_in_flight = 0
    assert activities.suspect_room(act) == 1
    plumbing.claimed_in_flight = 1
    assert activities.suspect_room(act) == 0  # counted afresh


@workflow.defn
class Quick:
    @workflow.run
    async def run(self) -> None:
        return None


async def test_one_suspect_per_worker_of_either_kind(fake_client: Client) -> None:
    """Workflow code can kill a worker as an activity can: workflow tasks had no suspect
    limit, and a worker that held a suspect activity still claimed suspect workflow
    tasks (and the other way round), to die together."""
    worker = Worker(fake_client, task_queue=QUEUE, workflows=[Quick], activities=[instant],
                    handle_signals=False)
    activities, workflows, plumbing = (worker._activity_tasks, worker._workflow_tasks,
                                       worker._plumbing)
    act, wf = plumbing.activity_streams[0], plumbing.workflow_streams[0]
    assert workflows.suspect_room(wf) == 1 and activities.suspect_room(act) == 1
    plumbing.suspect = (act, "1-0")
    assert activities.suspect == (act, "1-0") and workflows.suspect_room(wf) == 0
    plumbing.suspect = None
    plumbing.suspect = (wf, "1-0")
    assert activities.suspect_room(act) == 0 and workflows.suspect_room(wf) == 0


async def test_workflow_suspects_are_claimed_one_at_a_time_and_run_alone(
    fake_client: Client,
) -> None:
    """Workflow tasks that went down with a worker (a poison workflow task that kills the
    worker, and healthy ones that were in flight with it) were claimed together and
    run in one batch: killed together again and again, all dead-lettered with the
    poison. Now a worker takes one suspect workflow task, runs it in a batch of its
    own, and leaves the others pending on the dead consumer until it is done."""
    from engine.keys import GROUP

    worker = Worker(fake_client, task_queue=QUEUE, workflows=[Quick], handle_signals=False,
                    liveness_timeout=0.05, max_deliveries=3)
    workflows, plumbing, redis = worker._workflow_tasks, worker._plumbing, fake_client.redis
    await fake_client.store.ensure_groups(QUEUE)
    wf = plumbing.workflow_streams[0]
    ids: list[Any] = [await redis.xadd(wf, {b"workflow_id": f"w{n}".encode(), b"run_id": b"r",
                                             b"epoch": b"1"}) for n in (1, 2)]
    await redis.xreadgroup(GROUP, "gone", {wf: ">"})
    await redis.xclaim(wf, GROUP, "gone", 0, ids)  # went down with a worker once
    await anyio.sleep(0.1)  # idle past the liveness timeout
    batches: list[list[str]] = []
    release = anyio.Event()

    async def run_now(tasks: list[_Task] | None) -> None:
        batches.append([t.msg_id for t in tasks or ()])
        await release.wait()

    workflows.run_now = run_now  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        plumbing.tg = tg
        await worker.liveness.claim_from_dead()
        with anyio.fail_after(5):
            while not batches:
                await anyio.sleep(0.01)
        assert batches == [[ids[0].decode()]]
        assert plumbing.suspect == (wf, ids[0].decode())
        pending: Any = await redis.xpending_range(wf, GROUP, "-", "+", 10)
        assert [(p["message_id"], p["consumer"]) for p in pending] == [
            (ids[0], worker.identity.encode()), (ids[1], b"gone")]
        await worker.liveness.claim_from_dead()  # our suspect still runs: none taken
        assert [p["consumer"] for p in await redis.xpending_range(
            wf, GROUP, "-", "+", 10)] == [worker.identity.encode(), b"gone"]
        release.set()
        with anyio.fail_after(5):
            while plumbing.suspect is not None:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
