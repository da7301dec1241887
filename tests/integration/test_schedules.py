"""The Schedules API end to end (sdk/client/schedules.py, sdk/worker/scheduler.py): on
fakeredis and a real server (`client`), and the exactly-once fires with two worker
processes, one killed (real server)."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import IO

import anyio
import pytest

from engine.schedule_policy import decide, workflow_id_of
from engine.schedule_spec import from_ms, to_ms
from engine.schedules import ScheduleStore
from sdk import (
    Client,
    InvalidArgumentError,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleNotFoundError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from sdk.testing import running_worker
from sdk.worker.scheduler import Scheduler
from tests.integration.schedule_workflows import Hold, Tick
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.anyio

TQ = "sched"
Overlap = ScheduleOverlapPolicy


def every(seconds: float, overlap: Overlap = Overlap.ALLOW_ALL, *, workflow: type = Tick,
          args: tuple[str, ...] = ("x",), paused: bool = False, **spec: object) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(workflow, *args, id="tick", task_queue=TQ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))],
                          **spec),  # type: ignore[arg-type]
        policy=SchedulePolicy(overlap=overlap),
        state=ScheduleState(paused=paused, note="made paused" if paused else ""),
    )


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.1)


async def server_now(client: Client) -> datetime:
    return from_ms(await ScheduleStore(client.store).server_ms())


@pytest.mark.timeout(30)
async def test_create_describe_list_delete(client: Client) -> None:
    handle = await client.create_schedule("nightly", Schedule(
        action=ScheduleActionStartWorkflow(Tick.run, "n", id="report", task_queue=TQ,
                                           memo={"team": "ops"}),
        spec=ScheduleSpec(cron_expressions=["0 3 * * *"], time_zone_name="Europe/Paris"),
        policy=SchedulePolicy(overlap=Overlap.BUFFER_ONE)))
    desc = await handle.describe()
    assert desc.id == "nightly"
    action = desc.schedule.action
    assert (action.workflow, action.args, action.id, action.task_queue, action.memo) == (
        "Tick", ["n"], "report", TQ, {"team": "ops"})
    assert desc.schedule.spec.cron_expressions == ["0 3 * * *"]
    assert desc.schedule.policy.overlap is Overlap.BUFFER_ONE
    nxt = desc.info.next_action_times
    assert len(nxt) == 10 and nxt == sorted(nxt)
    assert all(t.astimezone(datetime.now().astimezone().tzinfo).minute == 0 for t in nxt)
    assert desc.info.num_actions == 0 and desc.info.recent_actions == []

    with pytest.raises(ScheduleAlreadyRunningError):
        await client.create_schedule("nightly", every(1))
    await client.create_schedule("other", every(60))
    listed = [s async for s in client.list_schedules()]
    assert sorted(s.id for s in listed) == ["nightly", "other"]
    assert {s.schedule.action.workflow for s in listed} == {"Tick"}

    await handle.delete()
    with pytest.raises(ScheduleNotFoundError):
        await handle.describe()
    with pytest.raises(ScheduleNotFoundError):
        await handle.pause()
    assert [s.id async for s in client.list_schedules()] == ["other"]


@pytest.mark.timeout(30)
async def test_bad_input_is_refused_at_the_call(client: Client) -> None:
    with pytest.raises(InvalidArgumentError):
        await client.create_schedule("bad{id}", every(1))
    with pytest.raises(InvalidArgumentError):
        await client.create_schedule("s", Schedule(
            action=ScheduleActionStartWorkflow(Tick.run, "x", id="t", task_queue=TQ),
            spec=ScheduleSpec(cron_expressions=["61 * * * *"])))
    with pytest.raises(InvalidArgumentError):
        await client.create_schedule("s", Schedule(
            action=ScheduleActionStartWorkflow(Tick.run, "x", id="t" * 250, task_queue=TQ),
            spec=ScheduleSpec(cron_expressions=["0 * * * *"])))
    assert [s async for s in client.list_schedules()] == []


@pytest.mark.timeout(40)
async def test_fires_start_one_workflow_each(client: Client) -> None:
    handle = await client.create_schedule("s", every(1))
    async with running_worker(client, task_queue=TQ, workflows=[Tick]):
        await until(lambda: _actions_at_least(handle, 3))
    desc = await handle.describe()
    ids = [r.action.workflow_id for r in desc.info.recent_actions]
    assert len(ids) == len(set(ids)) == desc.info.num_actions
    for recent in desc.info.recent_actions:
        assert recent.action.workflow_id == workflow_id_of("tick", to_ms(recent.scheduled_at))
        assert recent.started_at >= recent.scheduled_at
    result = await client.get_workflow_handle(ids[0]).result()
    assert result == f"tick x {ids[0]}"


async def _actions_at_least(handle: object, n: int) -> bool:
    desc: ScheduleDescription = await handle.describe()  # type: ignore[attr-defined]
    return desc.info.num_actions >= n


@pytest.mark.timeout(40)
async def test_paused_fires_nothing_until_triggered_or_unpaused(client: Client) -> None:
    handle = await client.create_schedule("s", every(1, paused=True))
    desc = await handle.describe()
    assert desc.schedule.state.paused and desc.info.next_action_times == []
    async with running_worker(client, task_queue=TQ, workflows=[Tick]) as worker:
        await worker.scheduler.run_once()
        await anyio.sleep(1.5)
        await worker.scheduler.run_once()
        assert (await handle.describe()).info.num_actions == 0
        await handle.trigger()
        await until(lambda: _actions_at_least(handle, 1))
        unpaused_at = await server_now(client)
        await handle.unpause(note="go")
        desc = await handle.describe()
        assert not desc.schedule.state.paused and desc.schedule.state.note == "go"
        await until(lambda: _actions_at_least(handle, 3))
        # The times that fell due while paused are dropped, not caught up.
        later = (await handle.describe()).info.recent_actions[1:]
        assert all(r.scheduled_at >= unpaused_at for r in later)
        await handle.pause(note="stop")
        assert (await handle.describe()).schedule.state.note == "stop"


@pytest.mark.timeout(40)
async def test_skip_while_the_previous_runs_then_start_again(client: Client) -> None:
    handle = await client.create_schedule("s", every(1, Overlap.SKIP, workflow=Hold, args=()))
    async with running_worker(client, task_queue=TQ, workflows=[Hold]):
        await until(lambda: _actions_at_least(handle, 1))
        await until(lambda: _skipped_at_least(handle, 2))
        desc = await handle.describe()
        assert desc.info.num_actions == 1
        first = desc.info.running_actions[0].workflow_id
        await client.get_workflow_handle(first).signal(Hold.release)
        await until(lambda: _actions_at_least(handle, 2))
    desc = await handle.describe()
    assert desc.info.recent_actions[1].action.workflow_id != first


async def _skipped_at_least(handle: object, n: int) -> bool:
    desc: ScheduleDescription = await handle.describe()  # type: ignore[attr-defined]
    return desc.info.num_actions_skipped_overlap >= n


@pytest.mark.timeout(40)
async def test_buffer_one_starts_the_waiting_fire_when_the_previous_closes(
    client: Client,
) -> None:
    handle = await client.create_schedule(
        "s", every(1, Overlap.BUFFER_ONE, workflow=Hold, args=()))
    async with running_worker(client, task_queue=TQ, workflows=[Hold]):
        await until(lambda: _actions_at_least(handle, 1))
        await until(lambda: _skipped_at_least(handle, 1))  # the buffer holds one: others skip
        desc = await handle.describe()
        assert desc.info.num_actions == 1 and desc.info.num_buffered == 1
        first = desc.info.recent_actions[0]
        await client.get_workflow_handle(first.action.workflow_id).signal(Hold.release)
        await until(lambda: _actions_at_least(handle, 2))
        second = (await handle.describe()).info.recent_actions[1]
        # The buffered fire keeps its own time: the one right after the first.
        assert second.scheduled_at == first.scheduled_at + timedelta(seconds=1)


@pytest.mark.timeout(40)
async def test_terminate_other_ends_the_previous_run(client: Client) -> None:
    handle = await client.create_schedule(
        "s", every(1, Overlap.TERMINATE_OTHER, workflow=Hold, args=()))
    async with running_worker(client, task_queue=TQ, workflows=[Hold]):
        await until(lambda: _actions_at_least(handle, 2))
    first = (await handle.describe()).info.recent_actions[0].action.workflow_id
    described = await client.get_workflow_handle(first).describe()
    assert described.status == WorkflowExecutionStatus.TERMINATED


@pytest.mark.timeout(40)
async def test_missed_fires_are_caught_up_within_the_window_only(client: Client) -> None:
    schedule = every(1)
    schedule.policy = SchedulePolicy(overlap=Overlap.ALLOW_ALL,
                                     catchup_window=timedelta(seconds=2))
    handle = await client.create_schedule("s", schedule)
    created = await server_now(client)
    await anyio.sleep(5)  # no worker runs: about 5 fires are missed
    async with running_worker(client, task_queue=TQ, workflows=[Tick]) as worker:
        await worker.scheduler.run_once()
        resumed = await server_now(client)
        desc = await handle.describe()
    info = desc.info
    assert info.num_actions_missed_catchup_window >= 2
    fired = [r.scheduled_at for r in info.recent_actions]
    assert fired and all(t >= resumed - timedelta(seconds=3) for t in fired)
    assert fired[0] > created


@pytest.mark.timeout(40)
async def test_backfill_fires_each_time_of_the_range(client: Client) -> None:
    handle = await client.create_schedule("s", every(10))
    now = await server_now(client)
    start = now.replace(microsecond=0) - timedelta(seconds=100)
    # (start - 1 ms, end]: 40 s, so exactly 4 times of a 10-second interval.
    end = start + timedelta(seconds=39, milliseconds=999)
    await handle.backfill(ScheduleBackfill(start_at=start, end_at=end))
    async with running_worker(client, task_queue=TQ, workflows=[Tick]):
        await until(lambda: _actions_at_least(handle, 4))
    scheduled = [r.scheduled_at for r in (await handle.describe()).info.recent_actions]
    first = datetime.fromtimestamp(-(-int(start.timestamp()) // 10) * 10, tz=UTC)
    assert scheduled[:4] == [first + timedelta(seconds=10 * i) for i in range(4)]


@pytest.mark.timeout(30)
async def test_update_replaces_the_schedule(client: Client) -> None:
    handle = await client.create_schedule("s", every(60))

    def updater(update: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = update.description.schedule
        schedule.spec = ScheduleSpec(cron_expressions=["*/5 * * * *"])
        schedule.state = ScheduleState(paused=True, note="maintenance")
        return ScheduleUpdate(schedule)

    await handle.update(updater)
    desc = await handle.describe()
    assert desc.schedule.spec.cron_expressions == ["*/5 * * * *"]
    assert desc.schedule.state.paused and desc.schedule.state.note == "maintenance"
    await handle.update(lambda _: None)  # no change
    assert (await handle.describe()).schedule.state.note == "maintenance"


@pytest.mark.timeout(60)
async def test_racing_schedulers_start_each_fire_once(client: Client) -> None:
    """Four schedulers take the same 20 backfilled fires at once: each starts once."""
    handle = await client.create_schedule("s", every(3600))
    now = await server_now(client)
    start = now.replace(microsecond=0) - timedelta(days=1)
    end = start + timedelta(hours=20) - timedelta(milliseconds=1)  # 20 hourly times
    await handle.backfill(ScheduleBackfill(start_at=start, end_at=end, overlap=Overlap.ALLOW_ALL))
    schedulers = [Scheduler(client.store) for _ in range(4)]
    with anyio.fail_after(40):
        while (await handle.describe()).info.num_buffered:
            async with anyio.create_task_group() as tg:
                for scheduler in schedulers:
                    tg.start_soon(scheduler.take_fires, "s")
    desc = await handle.describe()
    assert desc.info.num_actions == 20
    assert sum(s.started for s in schedulers) == 20
    ids = {w.id async for w in client.list_workflows(type="Tick")}
    assert len(ids) == 20


@pytest.mark.timeout(40)
async def test_a_start_left_pending_by_a_dead_worker_is_finished_once(client: Client) -> None:
    """A worker that recorded a fire and died before starting it: another finishes it
    once the lease has run out."""
    handle = await client.create_schedule("s", every(3600))
    await handle.trigger()
    store = ScheduleStore(client.store)
    rec = await store.read("s")
    step = decide(rec, await store.server_ms(), set())
    assert step.start is not None
    assert await store.advance(rec, step) == "ok"  # ... and the worker dies here
    survivor = Scheduler(client.store)
    await survivor.take_fires("s")
    assert survivor.started == 0  # the lease is the dead worker's for a while
    with anyio.fail_after(20):
        while not survivor.started:
            await anyio.sleep(0.5)
            await survivor.take_fires("s")
    desc = await handle.describe()
    assert desc.info.num_actions == 1
    assert desc.info.recent_actions[0].action.workflow_id == workflow_id_of("tick", step.start)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_two_workers_one_killed_each_fire_exactly_once(
    real_client: Client, redis_url: str
) -> None:
    """The issue's check, shortened: 1-second fires over 16 s, two worker processes,
    one killed mid-way: every fire time starts exactly one workflow."""
    client = real_client
    with tempfile.TemporaryFile() as log:
        await _two_workers_one_killed(client, redis_url, log)


async def _two_workers_one_killed(client: Client, redis_url: str, log: IO[bytes]) -> None:
    procs = [WorkerProcess(redis_url, client.keys.prefix, TQ,
                           "tests.integration.schedule_workflows", liveness=1.0,
                           log=log).start() for _ in range(2)]
    try:
        for proc in procs:
            await anyio.to_thread.run_sync(proc.wait_ready)
        start = (await server_now(client)).replace(microsecond=0) + timedelta(seconds=2)
        end = start + timedelta(seconds=15)
        handle = await client.create_schedule("s", every(1, start_at=start, end_at=end))
        await anyio.sleep(8)
        procs[0].kill()
        store = ScheduleStore(client.store)

        async def finished() -> bool:
            rec = await store.read("s")
            return rec.next_ms is None and rec.pending is None

        await until(finished, timeout=60)
        expected = {workflow_id_of("tick", to_ms(start) + 1000 * i) for i in range(16)}
        started = [w.id async for w in client.list_workflows(type="Tick")]
        assert sorted(started) == sorted(expected)
        assert (await handle.describe()).info.num_actions == 16
    finally:
        for proc in procs:
            proc.stop()


@pytest.mark.timeout(30)
async def test_a_broken_schedule_does_not_stop_the_others(client: Client) -> None:
    broken = await client.create_schedule("broken", every(1))
    fine = await client.create_schedule("fine", every(3600))
    await client.redis.hset(client.keys.schedule("broken"), "policy", "not json")
    await broken.trigger()
    await fine.trigger()
    scheduler = Scheduler(client.store)
    await scheduler.run_once()
    assert scheduler.started == 1
    assert (await fine.describe()).info.num_actions == 1


@pytest.mark.timeout(30)
async def test_describe_does_not_show_a_closed_workflow_running(client: Client) -> None:
    """The stored list of running workflows is pruned at the next fire; describe reads
    their state meanwhile."""
    handle = await client.create_schedule("s", every(3600, workflow=Hold, args=()))
    await handle.trigger()
    async with running_worker(client, task_queue=TQ, workflows=[Hold]):
        await until(lambda: _actions_at_least(handle, 1))
        desc = await handle.describe()
        started = desc.info.recent_actions[0].action.workflow_id
        assert [a.workflow_id for a in desc.info.running_actions] == [started]
        await client.get_workflow_handle(started).signal(Hold.release)
        await client.get_workflow_handle(started).result()
    assert (await handle.describe()).info.running_actions == []


@pytest.mark.timeout(40)
async def test_pause_on_failure_pauses_when_a_started_workflow_is_terminated(
    client: Client,
) -> None:
    schedule = every(1, Overlap.SKIP, workflow=Hold, args=())
    schedule.policy = SchedulePolicy(overlap=Overlap.SKIP, pause_on_failure=True)
    handle = await client.create_schedule("s", schedule)
    async with running_worker(client, task_queue=TQ, workflows=[Hold]):
        await until(lambda: _actions_at_least(handle, 1))
        first = (await handle.describe()).info.running_actions[0].workflow_id
        await client.get_workflow_handle(first).terminate(reason="broken")

        async def paused() -> bool:
            return (await handle.describe()).schedule.state.paused

        await until(paused)
        desc = await handle.describe()
        assert first in desc.schedule.state.note and "TERMINATED" in desc.schedule.state.note
        # Paused: the next fires start nothing.
        await anyio.sleep(1.5)
        assert (await handle.describe()).info.num_actions == 1
        # Unpaused, it fires again (the failure was taken into account once).
        await handle.unpause()
        await until(lambda: _actions_at_least(handle, 2))
        assert not (await handle.describe()).schedule.state.paused
