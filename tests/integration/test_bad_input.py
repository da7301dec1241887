"""Wrong input is dropped or answered with an error, with the reason on record; it
never leaves a workflow task failing for ever (issue: a signal whose arguments did not
fit its handler failed the task ~90 times in 14 minutes, the run RUNNING for good)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog

from sdk import Client, QueryFailedError, Worker, workflow
from sdk.client.registry import LIVE_WITHIN_MS, live_registry
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio


@workflow.defn
class Collector:
    def __init__(self) -> None:
        self.got: list[Any] = []

    @workflow.signal
    def go(self) -> None:
        self.got.append("go")

    @workflow.signal
    def add(self, n: int) -> None:
        self.got.append(n)

    @workflow.query
    def seen(self) -> list[Any]:
        return self.got

    @workflow.run
    async def run(self) -> list[Any]:
        await workflow.wait_condition(lambda: "go" in self.got)
        workflow.logger.info("collected %d values: %s", len(self.got), self.got)
        workflow.logger.warning("one argument short: %s %s", "x")
        workflow.logger.info("with extra", extra={"customer": "c-1"})
        return self.got


def _worker(client: Client, **options: Any) -> Any:
    return running_worker(client, task_queue="q", workflows=[Collector], **options)


async def _history_notes(client: Client, workflow_id: str) -> str:
    handle = client.get_workflow_handle(workflow_id)
    notes = [
        e.attributes["signals_dropped"]
        async for e in handle.fetch_history()
        if e.type == "WorkflowTaskCompleted" and e.attributes.get("signals_dropped")
    ]
    return " | ".join(notes)


async def test_signals_that_do_not_fit_are_dropped_with_a_reason(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Collector.run, id="bad-signals", task_queue="q")
        await handle.signal("go_nowhere")                 # no handler of that name
        await handle.signal(Collector.add, 1, 2)          # one argument too many
        await handle.signal(Collector.add)                # one too few
        await client.store.signal(handle.id, "", "add", b"\x92\x01")  # not MessagePack
        await handle.signal(Collector.add, 5)             # fits
        await handle.signal(Collector.go, "x")            # the case: go() takes none
        await handle.signal(Collector.go)
        with anyio.fail_after(10):
            assert await handle.result() == [5, "go"]
    description = await handle.describe()
    assert description.last_workflow_task_failure is None
    assert description.last_signal_dropped is not None
    notes = await _history_notes(client, "bad-signals")
    assert "'go_nowhere' dropped: workflow Collector has no signal handler named" in notes
    assert "handlers: add, go" in notes
    assert notes.count("'add' dropped: ") == 3
    assert "not valid MessagePack" in notes
    assert "'go' dropped: 1 argument(s) do not fit handler go(self)" in notes
    # A worker with nothing cached replays the history with the drops: same state.
    async with _worker(client, max_cached_workflows=0):
        assert await handle.query(Collector.seen) == [5, "go"]


async def test_workflow_logger_takes_stdlib_arguments(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        async with _worker(client):
            handle = await client.start_workflow(Collector.run, id="log-args", task_queue="q")
            await handle.signal(Collector.add, 3)
            await handle.signal(Collector.go)
            with anyio.fail_after(10):
                assert await handle.result() == [3, "go"]
    events = {entry["event"]: entry for entry in logs}
    assert "collected 2 values: [3, 'go']" in events
    assert events["collected 2 values: [3, 'go']"]["workflow_id"] == "log-args"
    short = [e for e in events if e.startswith("one argument short")]
    assert short and "do not fit the format" in short[0]
    assert events["with extra"]["customer"] == "c-1"


async def test_registry_names_what_no_live_worker_handles(client: Client) -> None:
    assert (await live_registry(client, "q")).handler_problem("Collector", "signal", "go") == (
        "no live worker polls task queue 'q'"
    )
    async with _worker(client):
        with anyio.fail_after(5):
            while (registry := await live_registry(client, "q")).live_workers == 0:
                await anyio.sleep(0.01)
    assert registry.live_workers == 1
    assert registry.handler_problem("Collector", "signal", "go") is None
    assert registry.handler_problem("Collector", "query", "seen") is None
    assert registry.handler_problem("Collector", "signal", "picked_up") == (
        "workflow Collector has no signal named 'picked_up' on the live workers of task "
        "queue 'q' (signals: add, go)"
    )
    assert registry.handler_problem("Collector", "query", "status") == (
        "workflow Collector has no query named 'status' on the live workers of task "
        "queue 'q' (queries: seen)"
    )
    assert "knows workflow type 'Order'" in str(
        registry.handler_problem("Order", "signal", "go")
    )


async def test_a_long_liveness_timeout_still_beats_within_the_live_window(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker with liveness_timeout=120 beat every 24 s: for the CLI and UI (live =
    beat within 15 s) it was gone most of the time, and `workflow query` refused."""
    worker = Worker(fake_client, task_queue="q", workflows=[Collector], liveness_timeout=120,
                    handle_signals=False)
    await fake_client.store.ensure_groups("q")
    pauses: list[float] = []

    async def one_beat(seconds: float) -> None:
        pauses.append(seconds)
        worker._plumbing.stopping = True

    monkeypatch.setattr(anyio, "sleep", one_beat)  # the module Liveness sleeps through
    await worker.liveness.beat_loop()
    assert pauses and pauses[0] * 1000 <= LIVE_WITHIN_MS / 3


async def test_query_with_arguments_that_do_not_fit_answers_an_error(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Collector.run, id="bad-query", task_queue="q")
        with pytest.raises(QueryFailedError, match=r"do not fit query handler seen\(self\)"):
            await handle.query(Collector.seen, "extra")
        await handle.signal(Collector.add, 1)
        await handle.signal(Collector.go)
        with anyio.fail_after(10):
            assert await handle.result() == [1, "go"]


async def test_dead_lettered_workflow_task_is_named_in_describe_and_list(client: Client) -> None:
    """A run whose workflow task went to the dead letters used to look like any RUNNING
    run; describe and list now carry the dead letter's id, until it is requeued."""
    async with _worker(client, max_deliveries=2):
        handle = await client.start_workflow("NotDeployed", id="dead-task", task_queue="q")
        with anyio.fail_after(15):
            while not (letters := await client.list_dead_letters()):
                await anyio.sleep(0.02)
        [letter] = letters
        description = await handle.describe()
        assert description.status == "RUNNING"
        assert description.dead_letter_id == letter.id
        assert "not registered" in (description.last_workflow_task_failure or {})["message"]
        [row] = [r async for r in client.list_workflows()]
        assert row.dead_letter_id == letter.id
        await client.requeue_dead_letter(letter.id)
        assert (await handle.describe()).dead_letter_id is None
        await handle.terminate("not deployed")
