"""Scenario 9, limits: payload size, history length and pending activities, each at
and past the limit, each with a clear error (engine/limits.py, docs/reliability.md)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine import activities
from engine.errors import HistoryLimitError, PayloadError, TerminatedError, WorkflowFailureError
from engine.functions import library_source
from engine.limits import MAX_HISTORY_EVENTS, MAX_PAYLOAD_BYTES, MAX_PENDING_ACTIVITIES
from scripts.chaos import checker
from scripts.chaos.poison_workflows import SignalLog
from sdk import ApplicationError, Client, activity, workflow
from sdk.testing import running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.chaos]


def test_lua_and_python_agree_on_the_history_limit() -> None:
    match = re.search(r"local MAX_HISTORY_EVENTS = (\d+)", library_source())
    assert match is not None and int(match[1]) == MAX_HISTORY_EVENTS == 50_000


# --- payloads ---------------------------------------------------------------------------


async def test_payload_at_the_limit_works_and_one_byte_more_is_refused(client: Client) -> None:
    # MessagePack of [b"..."] with a bin32 string: 1 (array) + 5 (header) + n bytes.
    at_limit = b"x" * (MAX_PAYLOAD_BYTES - 6)
    assert len(client.codec.encode([at_limit])) == MAX_PAYLOAD_BYTES
    handle = await client.start_workflow(SignalLog.run, 1, id="wf-big", task_queue="q")
    # Named by strings: the handlers' hints (int) would refuse bytes before the size.
    await handle.signal("add", at_limit)
    with pytest.raises(PayloadError, match=f"over the limit of {MAX_PAYLOAD_BYTES} bytes"):
        await handle.signal("add", at_limit + b"x")
    with pytest.raises(PayloadError, match="over the limit"):
        await client.start_workflow("SignalLog", at_limit + b"x", id="wf-big2", task_queue="q")
    events = [e.type async for e in handle.fetch_history()]
    assert events == ["WorkflowExecutionStarted", "WorkflowExecutionSignaled"]


# --- history length ---------------------------------------------------------------------


async def _limit_history(client: Client, workflow_id: str, max_events: int) -> None:
    """Lower one run's history limit (the state hash field the Lua reads)."""
    await client.redis.hset(client.keys.workflow(workflow_id), "max_events", max_events)


async def test_signals_stop_at_the_history_limit_and_the_run_is_terminated(
    client: Client,
) -> None:
    handle = await client.start_workflow(SignalLog.run, 100, id="wf-long", task_queue="q")
    await _limit_history(client, "wf-long", 10)
    for n in range(9):  # events 2..10: the history reaches the limit exactly
        await handle.signal(SignalLog.add, n)
    with pytest.raises(HistoryLimitError, match="continue_as_new") as info:
        await handle.signal(SignalLog.add, 9)
    assert "'wf-long'" in str(info.value) and "10 events" in str(info.value)
    # The next workflow task would append past the limit: the run ends instead.
    async with running_worker(client, task_queue="q", workflows=[SignalLog]):
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert isinstance(failed.value.cause, TerminatedError)
    assert "history limit" in str(failed.value.cause)
    assert (await handle.describe()).status == "TERMINATED"
    types = [e.type async for e in handle.fetch_history()]
    assert types == ["WorkflowExecutionStarted"] + ["WorkflowExecutionSignaled"] * 9 + [
        "WorkflowExecutionTerminated"]
    await _assert_history_sound(client, "wf-long")


@workflow.defn
class Ticker:
    """Sleeps `ticks` times, then continues as new `rounds` more times."""

    @workflow.run
    async def run(self, ticks: int, rounds: int) -> int:
        for _ in range(ticks):
            await workflow.sleep(timedelta(milliseconds=1))
        if rounds:
            workflow.continue_as_new(ticks, rounds - 1)
        return ticks


async def test_workflow_task_past_the_limit_terminates_but_a_close_gets_through(
    client: Client,
) -> None:
    """Each tick costs 3 events (TimerStarted, TimerFired, WorkflowTaskCompleted)."""
    long = await client.start_workflow(Ticker.run, 50, 0, id="wf-ticks", task_queue="q")
    await _limit_history(client, "wf-ticks", 12)
    # 4 ticks: 1 started + 4 * 3 + completion 2 (task completed, workflow completed) = 15
    # events, over a limit of 14: only the closing completion goes past it.
    short = await client.start_workflow(Ticker.run, 4, 0, id="wf-fits", task_queue="q")
    await _limit_history(client, "wf-fits", 14)
    async with running_worker(client, task_queue="q", workflows=[Ticker]):
        with anyio.fail_after(15):
            assert await short.result() == 4
            with pytest.raises(WorkflowFailureError, match="terminated"):
                await long.result()
    history = [e async for e in long.fetch_history()]
    # Past the limit only what no workflow task wrote: a timer's fire (bounded by the
    # run's timers and activities), and the termination.
    assert {e.type for e in history[12:]} <= {"TimerFired", "WorkflowExecutionTerminated"}
    assert history[-1].type == "WorkflowExecutionTerminated"
    assert "continue_as_new" in history[-1].attributes["reason"]
    await _assert_history_sound(client, "wf-fits", 4)


async def _assert_history_sound(client: Client, wf_id: str, result: Any = None) -> None:
    verdict = await checker.check(client.redis, client.keys, client.codec, {wf_id: result})
    # The checker wants a completion; a terminated run is sound if that is all it says.
    problems = [p for p in verdict.problems if "closing events" not in p]
    assert not problems and not verdict.lost, verdict.details()


# --- pending activities ---------------------------------------------------------------


@activity.defn
async def never_runs() -> None:  # no worker of its queue exists in these tests
    await anyio.sleep(3600)


@workflow.defn
class Fanout:
    @workflow.run
    async def run(self, n: int) -> str:
        pending = []
        try:
            for _ in range(n):
                pending.append(workflow.start_activity(
                    never_runs, task_queue="nobody", start_to_close_timeout=timedelta(hours=1)))
        except ApplicationError as exc:
            return f"{len(pending)}: {exc.type}: {exc}"
        return f"{len(pending)} scheduled"


@pytest.mark.parametrize("limit", [3])
async def test_pending_activities_at_and_past_a_lowered_limit(
    client: Client, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(activities, "MAX_PENDING_ACTIVITIES", limit)  # read where it is checked
    async with running_worker(client, task_queue="q", workflows=[Fanout]):
        with anyio.fail_after(15):
            at = await client.execute_workflow(Fanout.run, limit, id="wf-at", task_queue="q")
            past = await client.execute_workflow(Fanout.run, limit + 1, id="wf-past",
                                                 task_queue="q")
    assert at == f"{limit} scheduled"
    # Regression: closing a run left its activities' state (and inputs) in its hash,
    # so describe() listed them as pending for ever (close_run compared 4 characters
    # with the 3 of 'act').
    assert (await client.get_workflow_handle("wf-at").describe()).pending_activities == []
    fields: Any = await client.redis.hkeys(client.keys.workflow("wf-at"))
    assert not [f for f in fields if f.startswith(b"act")]
    assert past.startswith(f"{limit}: PendingActivityLimit: cannot schedule activity never_runs")
    assert f"the limit is {limit}" in past


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_pending_activities_at_and_past_the_real_limit(real_client: Client) -> None:
    client = real_client
    async with running_worker(client, task_queue="q", workflows=[Fanout]):
        with anyio.fail_after(90):
            past = await client.execute_workflow(Fanout.run, MAX_PENDING_ACTIVITIES + 1,
                                                 id="wf-real-past", task_queue="q")
    assert past.startswith(f"{MAX_PENDING_ACTIVITIES}: PendingActivityLimit")
    info = await client.get_workflow_handle("wf-real-past").describe()
    assert len(info.pending_activities) == 0  # closed: its activities were dropped
