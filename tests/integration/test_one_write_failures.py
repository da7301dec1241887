"""One-write activity steps for an activity's final failure (docs/design-notes.md
"One-write activity steps"): the worker that ran the last attempt and owns the run writes
the ActivityTaskFailed and the workflow's next step in one call (rd_act_fail_wft), the
event exactly as the history keeps it. A failure that is retried keeps its plain path;
a refused step is the plain failure, and the run replays."""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine import activities as engine_activities
from engine import events as ev
from engine.activities import CANCELLED_FAILURE
from engine.errors import ActivityError, ApplicationError, FailureError
from engine.store import Call
from sdk import (
    ActivityCancellationType,
    Client,
    RetryPolicy,
    Worker,
    activity,
    workflow,
)
from sdk.testing import Replayer, WorkflowHistory
from sdk.worker.workflow_runner import new_machine

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
TQ = "one-write-failures"
_TIMEOUT = timedelta(seconds=30)
#: Three attempts, retried at once; "BadInput" is never retried.
_POLICY = RetryPolicy(initial_interval=timedelta(milliseconds=5), maximum_attempts=3,
                      non_retryable_error_types=["BadInput"])


@activity.defn
async def refuse(kind: str) -> str:
    attempt = activity.info().attempt
    if kind == "non_retryable":
        raise ApplicationError("no way", {"attempt": attempt}, type="Refused",
                               non_retryable=True)
    if kind == "typed":  # not retried: its type is in the policy's list
        raise ApplicationError("bad input", type="BadInput")
    if kind == "flaky":  # retried, until the policy's attempts run out
        raise ApplicationError(f"flaky attempt {attempt}", type="Flaky")
    if kind == "crash":  # not an ApplicationError: retried the same way
        raise RuntimeError(f"crashed on attempt {attempt}")
    return "ok"


@activity.defn
async def until_cancelled() -> str:
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.01)


def _seen(exc: ActivityError) -> list[Any]:
    """What the code can tell of an activity's failure."""
    cause = exc.cause
    # The exception it was raised while handling: none, live or replayed.
    context = type(exc.__context__).__name__ if exc.__context__ is not None else None
    return [type(cause).__name__, str(cause), getattr(cause, "type", None),
            getattr(cause, "non_retryable", None), getattr(cause, "details", None),
            exc.attempt, cause.stack if isinstance(cause, FailureError) else None, context]


@workflow.defn
class Failures:
    """One activity per kind, one after another; how each ended and the code's time."""

    def __init__(self) -> None:
        self.seen: list[list[Any]] = []

    @workflow.run
    async def run(self, kinds: list[str]) -> list[list[Any]]:
        for kind in kinds:
            try:
                outcome = [await workflow.execute_activity(
                    refuse, kind, start_to_close_timeout=_TIMEOUT, retry_policy=_POLICY)]
            except ActivityError as exc:
                outcome = _seen(exc)
            self.seen.append([kind, outcome, int(workflow.now().timestamp() * 1000)])
        return self.seen

    @workflow.signal
    def poke(self) -> None:
        self.seen.append(["poke"])

    @workflow.query
    def state(self) -> list[list[Any]]:
        return self.seen


@workflow.defn
class CancelsOne:
    """Cancels an activity that waits for its cancellation to be recorded."""

    def __init__(self) -> None:
        self.seen: list[list[Any]] = []

    @workflow.run
    async def run(self) -> list[list[Any]]:
        fut = workflow.start_activity(
            until_cancelled, start_to_close_timeout=_TIMEOUT,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.sleep(0.1)
        fut.cancel()
        try:
            await fut
        except ActivityError as exc:
            self.seen.append(_seen(exc))
        self.seen.append([int(workflow.now().timestamp() * 1000)])
        return self.seen

    @workflow.query
    def state(self) -> list[list[Any]]:
        return self.seen


WORKFLOWS = [Failures, CancelsOne]


def _count_calls(client: Client) -> tuple[Tally[str], list[Call]]:
    """Every function a call_many of the client's store sends, by name, and the calls."""
    counted: Tally[str] = Tally()
    sent: list[Call] = []
    store = client.store
    original = store.call_many

    async def call_many(calls: list[Call], *args: Any, **kwargs: Any) -> Any:
        counted.update(c.function for c in calls)
        sent.extend(calls)
        return await original(calls, *args, **kwargs)

    store.call_many = call_many  # type: ignore[method-assign,assignment]
    return counted, sent


async def _replayed_state(client: Client, wf_id: str) -> list[list[Any]]:
    """The history replayed on a fresh machine (no worker, no cache): its state."""
    events = [e for _, e in await client.store.read_history(wf_id)]
    first = events[0]
    assert isinstance(first, ev.WorkflowExecutionStarted)
    definition = Replayer(workflows=WORKFLOWS)._workflows[first.workflow_type]
    machine = new_machine(definition, wf_id, first.run_id, first.task_queue, client.codec)
    machine.replay(events)
    assert machine.closed
    state: list[list[Any]] = machine.query("state", [])
    return state


async def _check(client: Client, wf_id: str, result: list[list[Any]]) -> list[bytes]:
    """The history replays to what the live code saw; returns each ActivityTaskFailed's
    failure as stored."""
    assert await _replayed_state(client, wf_id) == result
    fetched = [e async for e in client.get_workflow_handle(wf_id).fetch_history()]
    await Replayer(workflows=WORKFLOWS).replay_workflow(WorkflowHistory(wf_id, fetched))
    raw: Any = await client.redis.xrange(client.keys.history(wf_id))
    return [fields[b"failure"] for _, fields in raw if fields[b"type"] == b"ActivityTaskFailed"]


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=TQ, workflows=WORKFLOWS, activities=[refuse, until_cancelled])


@pytest.mark.timeout(60)
async def test_a_final_failure_is_one_call(client: Client) -> None:
    kinds = ["non_retryable", "typed", "flaky", "crash", "ok"]
    calls, sent = _count_calls(client)
    worker = _worker(client)
    async with worker:
        handle = await client.start_workflow(Failures.run, kinds, id="fail-1", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    by_kind = {r[0]: r[1] for r in result}
    assert by_kind["non_retryable"][:6] == [
        "ApplicationError", "no way", "Refused", True, [{"attempt": 1}], 1]
    assert by_kind["typed"][2:6] == ["BadInput", False, [], 1]
    assert by_kind["flaky"][1:3] == ["flaky attempt 3", "Flaky"] and by_kind["flaky"][5] == 3
    assert by_kind["crash"][1] == "crashed on attempt 3" and by_kind["crash"][5] == 3
    assert by_kind["ok"] == ["ok"]
    # The four final failures and the completion: one call each; the four retries of
    # flaky and crash the plain way (a retry timer, no workflow task).
    assert worker.stats["one_write_failures"] == 4
    assert worker.stats["one_write_steps"] == 5
    assert worker.stats["one_write_refused"] == 0
    assert calls["rd_act_fail_wft"] == 4
    assert calls["rd_act_complete_wft"] == 1
    assert calls["rd_act_complete"] == 4
    assert calls["rd_wft_start"] == 0
    stored = await _check(client, handle.id, result)
    # Byte for byte what the code's event was decoded from.
    assert stored == [c.args[6] for c in sent if c.function == "rd_act_fail_wft"]
    events = [e for _, e in await client.store.read_history(handle.id)]
    assert [e.attempt for e in events if isinstance(e, ev.ActivityTaskFailed)] == [1, 1, 3, 3]


@pytest.mark.timeout(60)
async def test_a_refused_final_failure_is_the_plain_one(client: Client) -> None:
    """A signal written between the worker's activation and its one write: the write
    takes the failure only (as rd_act_complete would), the run is evicted and its next
    task replays it; the code sees the signal, then the same failure."""
    worker = _worker(client)
    activities = worker._activity_tasks
    flush = activities.flush_completions
    poked = 0

    async def flush_after_a_signal() -> None:
        nonlocal poked
        if poked == 0 and any(c.function == "rd_act_fail_wft" for c in activities.completions):
            poked += 1
            await client.get_workflow_handle("fail-2").signal(Failures.poke)
        await flush()

    activities.flush_completions = flush_after_a_signal  # type: ignore[method-assign]
    async with worker:
        handle = await client.start_workflow(Failures.run, ["non_retryable", "typed"],
                                             id="fail-2", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    assert poked == 1
    assert [r[0] for r in result] == ["poke", "non_retryable", "typed"]
    assert result[1][1][2:4] == ["Refused", True]
    assert worker.stats["one_write_refused_owner"] == 1
    assert worker.stats["one_write_failures"] == 1  # the second one, on a cached run again
    stored = await _check(client, handle.id, result)
    assert len(stored) == 2


@pytest.mark.timeout(60)
async def test_a_failure_the_server_retries_is_refused(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that takes a failure for the last when the server retries it (a retry
    policy changed under it): the server schedules the retry and writes no event, the
    worker evicts the run it ran ahead, and the code sees only the last attempt's end."""
    monkeypatch.setattr(engine_activities, "final_failure", lambda p, a, payload, f: payload)
    worker = _worker(client)
    async with worker:
        handle = await client.start_workflow(Failures.run, ["flaky"], id="fail-3",
                                             task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    assert result[0][1][1] == "flaky attempt 3" and result[0][1][5] == 3
    assert worker.stats["one_write_refused_retry"] >= 1
    stored = await _check(client, handle.id, result)
    assert len(stored) == 1


@pytest.mark.timeout(60)
async def test_a_cancellation_the_worker_reports_is_one_call(client: Client) -> None:
    """WAIT_CANCELLATION_COMPLETED: the attempt hears the cancel in its heartbeat's
    reply and stops; its end (recorded as the server's cancellation) and the workflow's
    next step are one write."""
    calls, _ = _count_calls(client)
    worker = _worker(client)
    async with worker:
        handle = await client.start_workflow(CancelsOne.run, id="fail-4", task_queue=TQ)
        with anyio.fail_after(20):
            result = await handle.result()
    assert result[0][:2] == ["CancelledError", "activity cancelled"]
    assert worker.stats["one_write_failures"] == 1
    assert calls["rd_act_fail_wft"] == 1
    stored = await _check(client, handle.id, result)
    assert stored == [CANCELLED_FAILURE]
