"""Replayer on histories of runs made here: from handle.fetch_history(), and the CLI's
`redurable workflow replay` on the JSON of `workflow show -o json`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from engine.errors import NondeterminismError
from sdk import Client, activity, workflow
from sdk._present import event_json, to_json
from sdk.client.types import HistoryEvent
from sdk.testing import Replayer, WorkflowHistory, running_worker

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
T = timedelta(seconds=10)


@activity.defn
async def shout(word: str) -> str:
    return word.upper() + "!"


@workflow.defn(name="Greeter")
class Greeter:
    @workflow.run
    async def run(self, name: str) -> str:
        hello: str = await workflow.execute_activity(
            shout, f"hello {name}", start_to_close_timeout=T
        )
        await workflow.sleep(0.01)
        return hello


@workflow.defn(name="Greeter")
class GreeterChanged:
    """A deploy that dropped the sleep."""

    @workflow.run
    async def run(self, name: str) -> str:
        hello: str = await workflow.execute_activity(
            shout, f"hello {name}", start_to_close_timeout=T
        )
        return hello


async def greeted_history(client: Client) -> list[HistoryEvent]:
    async with running_worker(client, task_queue="q", workflows=[Greeter], activities=[shout]):
        handle = await client.start_workflow(Greeter.run, "ann", id="greet-1", task_queue="q")
        with anyio.fail_after(10):
            assert await handle.result() == "HELLO ANN!"
    return [e async for e in client.get_workflow_handle("greet-1").fetch_history()]


async def test_fetched_history_replays_and_changed_code_raises(client: Client) -> None:
    events = await greeted_history(client)
    await Replayer(workflows=[Greeter]).replay_workflow(WorkflowHistory("greet-1", events))
    # As temporalio's: await fetch_history() for a WorkflowHistory; or pass it as it is.
    handle = client.get_workflow_handle("greet-1")
    history = await handle.fetch_history()
    assert history.workflow_id == "greet-1"
    assert history.run_id == events[0].attributes["run_id"]
    assert [e.event_id for e in history.events] == [e.event_id for e in events]
    assert WorkflowHistory.from_json("greet-1", history.to_json()) == history
    result = await Replayer(workflows=[Greeter]).replay_workflow(handle.fetch_history())
    assert result.history.workflow_id == "greet-1"
    with pytest.raises(
        NondeterminismError, match=r"event 6 is TimerStarted.*issued CompleteWorkflow"
    ):
        await Replayer(workflows=[GreeterChanged]).replay_workflow(events)


@dataclass
class Person:
    name: str
    age: int


@workflow.defn(name="Birthday")
class Birthday:
    @workflow.run
    async def run(self, person: Person) -> Person:
        await workflow.sleep(0.01)
        return Person(person.name, person.age + 1)


async def test_typed_payloads_replay_from_their_decoded_form(client: Client) -> None:
    """fetch_history() decodes payloads to plain data; the replayer encodes them again
    and the run method gets its dataclass, as it did live."""
    async with running_worker(client, task_queue="q", workflows=[Birthday]):
        handle = await client.start_workflow(
            Birthday.run, Person("ann", 40), id="bday-1", task_queue="q"
        )
        with anyio.fail_after(10):
            assert await handle.result() == Person("ann", 41)
    history = await handle.fetch_history()
    assert history.events[0].attributes["input"] == [{"name": "ann", "age": 40}]
    await Replayer(workflows=[Birthday]).replay_workflow(history)
    await Replayer(workflows=[Birthday]).replay_workflow(history.to_json())


def replay_cli(path: Path, module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdk.cli.main", "workflow", "replay", str(path), "--module", module],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_cli_replays_a_shown_history(real_client: Client, tmp_path: Path) -> None:
    events = await greeted_history(real_client)
    path = tmp_path / "greet-1.json"
    path.write_text(to_json([event_json(e) for e in events]))
    good = replay_cli(path, "tests.integration.replay_good")
    assert good.returncode == 0, good.stderr
    assert f"{path}: replayed {len(events)} events, no nondeterminism" in good.stdout
    bad = replay_cli(path, "tests.integration.replay_changed")
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in bad.stderr
    assert lines[0].startswith(f"error: {path}: nondeterminism: history event")
    assert "TimerStarted" in lines[0]


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    missing = replay_cli(tmp_path / "nope.json", "tests.integration.replay_good")
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: cannot read history file")
    (tmp_path / "x.json").write_text("[]")
    empty = replay_cli(tmp_path / "x.json", "tests.integration.replay_good")
    assert empty.returncode == 1
    assert "starts with WorkflowExecutionStarted" in empty.stderr
    no_module = replay_cli(tmp_path / "x.json", "no_such_module_here")
    assert no_module.returncode == 1 and "no module named" in no_module.stderr
