"""One-write activity steps (docs/design-notes.md "One-write activity steps"): the
worker that ran an activity and owns its workflow's cached run writes the completion and
the workflow's next step in one call (rd_act_complete_wft). It lands only where the
history is what the code saw; else the completion alone is written and the step runs the
normal way, from a replay. Either way the history replays to the same state."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine import events as ev
from engine.store import Call
from sdk import Client, Worker, activity, workflow
from sdk.testing import Replayer, WorkflowHistory, running_worker
from sdk.worker.workflow_runner import CachedRun, new_machine

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
TQ = "one-write"
_TIMEOUT = timedelta(seconds=30)


@activity.defn
async def add_one(x: int) -> int:
    return x + 1


@workflow.defn
class Steps:
    """n activities one after another; what each returned and the time the code saw."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []
        self.pokes = 0

    @workflow.run
    async def run(self, n: int) -> list[list[int]]:
        total = 0
        for _ in range(n):
            total = await workflow.execute_activity(add_one, total,
                                                    start_to_close_timeout=_TIMEOUT)
            self.seen.append([total, int(workflow.now().timestamp() * 1000), self.pokes])
        return self.seen

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.query
    def state(self) -> list[list[int]]:
        return self.seen


def _count_calls(client: Client) -> Tally[str]:
    """Every function a call_many of the client's store sends, by name."""
    counted: Tally[str] = Tally()
    store = client.store
    original = store.call_many

    async def call_many(calls: list[Call], *args: Any, **kwargs: Any) -> Any:
        counted.update(c.function for c in calls)
        return await original(calls, *args, **kwargs)

    store.call_many = call_many  # type: ignore[method-assign,assignment]
    return counted


async def _replayed_state(client: Client, wf_id: str) -> list[list[int]]:
    """The history replayed on a fresh machine (no worker, no cache): its state."""
    events = [e for _, e in await client.store.read_history(wf_id)]
    first = events[0]
    assert isinstance(first, ev.WorkflowExecutionStarted)
    definition = Replayer(workflows=[Steps])._workflows[first.workflow_type]
    machine = new_machine(definition, wf_id, first.run_id, first.task_queue, client.codec)
    machine.replay(events)
    assert machine.closed
    state: list[list[int]] = machine.query("state", [])
    return state


async def _check_history(client: Client, wf_id: str, n: int) -> list[ev.Event]:
    events = [e for _, e in await client.store.read_history(wf_id)]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    completed = [e for e in events if isinstance(e, ev.ActivityTaskCompleted)]
    assert [e.activity_id for e in completed] == list(range(1, n + 1))
    # The code's time is on the server's clock: never before the events before its
    # step's cause, never after the step's own commit (the server stamps both).
    for i, e in enumerate(events):
        if isinstance(e, ev.WorkflowTaskCompleted) and i >= 2:
            assert events[i - 2].timestamp <= e.now <= e.timestamp
    fetched = [e async for e in client.get_workflow_handle(wf_id).fetch_history()]
    await Replayer(workflows=[Steps]).replay_workflow(WorkflowHistory(wf_id, fetched))
    return events


@pytest.mark.timeout(60)
async def test_each_activity_step_is_one_call(client: Client) -> None:
    n = 5
    calls = _count_calls(client)
    async with running_worker(client, task_queue=TQ, workflows=[Steps],
                              activities=[add_one]) as worker:
        handle = await client.start_workflow(Steps.run, n, id="steps-1", task_queue=TQ)
        result = await handle.result()
    assert [r[0] for r in result] == list(range(1, n + 1))
    assert worker.stats["one_write_steps"] == n
    assert worker.stats["one_write_refused"] == 0
    # One call a step: no plain completion, no workflow task started or completed after.
    # (The first workflow task's completion, on a real server, rides on a read.)
    assert calls["rd_act_complete_wft"] == n
    assert calls["rd_act_complete"] == 0
    assert calls["rd_wft_complete"] <= 1
    assert calls["rd_wft_start"] == 0
    await _check_history(client, handle.id, n)
    assert await _replayed_state(client, handle.id) == result


@pytest.mark.timeout(60)
async def test_a_signal_landing_first_refuses_the_speculation(client: Client) -> None:
    """A signal written between the worker's speculation and its one write: the write
    takes the completion only, the run is evicted and its next task replays it."""
    n = 3
    worker = Worker(client, task_queue=TQ, workflows=[Steps], activities=[add_one])
    activities = worker._activity_tasks
    flush = activities.flush_completions
    poked = 0

    async def flush_after_a_signal() -> None:
        nonlocal poked
        if poked == 0 and any(c.function == "rd_act_complete_wft"
                              for c in activities.completions):
            poked += 1
            await client.get_workflow_handle("steps-2").signal(Steps.poke)
        await flush()

    activities.flush_completions = flush_after_a_signal  # type: ignore[method-assign]
    async with worker:
        handle = await client.start_workflow(Steps.run, n, id="steps-2", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    assert poked == 1
    assert [r[0] for r in result] == list(range(1, n + 1))
    assert result[0][2] == 1  # the code saw the signal before the first result
    assert worker.stats["one_write_refused_owner"] == 1  # the signal's task was due
    assert worker.stats["one_write_steps"] == n - 1
    await _check_history(client, handle.id, n)
    assert await _replayed_state(client, handle.id) == result


@pytest.mark.timeout(60)
async def test_a_time_off_the_servers_clock_is_refused(client: Client) -> None:
    """A code time ahead of the server's clock (a wrong estimate of it): the completion
    is written alone and its workflow task handed back, run normally."""
    n = 3
    worker = Worker(client, task_queue=TQ, workflows=[Steps], activities=[add_one])
    clock = worker._activity_tasks.server_clock
    future = 10**13  # the year 2286
    clock.now_ms = lambda: future  # type: ignore[method-assign]
    async with worker:
        handle = await client.start_workflow(Steps.run, n, id="steps-3", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    assert [r[0] for r in result] == list(range(1, n + 1))
    assert worker.stats["one_write_refused_clock"] == n
    assert worker.stats["one_write_steps"] == 0
    assert worker.stats["eager_workflow_tasks"] >= n
    events = await _check_history(client, handle.id, n)
    assert all(e.now < future for e in events if isinstance(e, ev.WorkflowTaskCompleted))
    assert await _replayed_state(client, handle.id) == result


@pytest.mark.timeout(60)
async def test_another_workflows_task_in_the_stream_is_left_alone(client: Client) -> None:
    """A one-write step queues no workflow task and reads none: an entry of another
    workflow waiting in our sticky stream (the next one an eager read would take) stays
    there for whoever reads it."""
    worker = Worker(client, task_queue=TQ, workflows=[Steps], activities=[add_one])
    activities = worker._activity_tasks
    flush = activities.flush_completions
    planted: list[tuple[str, Any]] = []

    async def flush_after_a_foreign_task() -> None:
        if not planted and any(c.function == "rd_act_complete_wft"
                               for c in activities.completions):
            raw: Any = await client.redis.hget(client.keys.workflow("steps-4"), "wft_epoch")
            for stream in worker._plumbing.sticky_workflow_streams:
                planted.append((stream, await client.redis.xadd(stream, {
                    "workflow_id": "someone-else", "run_id": "r", "epoch": int(raw) + 1})))
        await flush()

    activities.flush_completions = flush_after_a_foreign_task  # type: ignore[method-assign]
    # The poller reads the shared streams only: the planted entries stay unread.
    worker._workflow_tasks._task_streams = list(worker._plumbing.workflow_streams)
    async with worker:
        handle = await client.start_workflow(Steps.run, 2, id="steps-4", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
        left = [(stream, sid) for stream, sid in planted
                if await client.redis.xrange(stream, sid, sid)]
    assert planted
    assert left == planted
    assert [r[0] for r in result] == [1, 2]
    assert worker.stats["one_write_steps"] == 2
    await _check_history(client, handle.id, 2)


@pytest.mark.timeout(60)
async def test_a_reply_never_lands_on_a_cache_entry_made_since(client: Client) -> None:
    """While a one-write step is in flight its run's cache entry may be replaced (a
    replay for a task of the run): the step's reply leaves the new entry alone."""
    worker = Worker(client, task_queue=TQ, workflows=[Steps], activities=[add_one])
    activities, tasks = worker._activity_tasks, worker._workflow_tasks
    flush = activities.flush_completions
    replacements: list[CachedRun] = []

    async def flush_after_a_replacement() -> None:
        step = next((c for c in activities.completions
                     if c.function == "rd_act_complete_wft"), None)
        if not replacements and step is not None:
            old = tasks.cache.get("steps-5", str(step.args[2]))
            assert old is not None and old.ahead
            definition = Replayer(workflows=[Steps])._workflows["Steps"]
            fresh = CachedRun(new_machine(definition, "steps-5", old.machine.info.run_id, TQ,
                                          client.codec))
            tasks.cache.evict("steps-5")
            tasks.cache.put("steps-5", fresh)
            replacements.append(fresh)
        await flush()

    settle = tasks.settle_one_write
    settled: list[Any] = []

    def settle_checking(call: Call, reply: Any) -> Any:
        out = settle(call, reply)
        if replacements and not settled:  # the step in flight when the entry was replaced
            settled.append(client.store.parse_act_complete_wft(reply))
            fresh = replacements[0]
            assert fresh.cursor is None and fresh.committed_id == -1
            assert fresh.machine.last_event_id == 0 and not fresh.ahead
        return out

    activities.flush_completions = flush_after_a_replacement  # type: ignore[method-assign]
    tasks.settle_one_write = settle_checking  # type: ignore[method-assign]
    async with worker:
        handle = await client.start_workflow(Steps.run, 3, id="steps-5", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    assert replacements
    assert settled and settled[0].commit is not None  # it landed, and left the entry alone
    assert [r[0] for r in result] == [1, 2, 3]
    await _check_history(client, handle.id, 3)
    assert await _replayed_state(client, handle.id) == result
