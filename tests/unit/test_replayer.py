"""sdk.testing.Replayer on the golden histories, in each form a history reaches it: the
events of fetch_history(), `workflow show -o json` text and files, WorkflowHistory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.codec import MsgpackCodec
from engine.errors import InvalidArgumentError, NondeterminismError
from sdk import workflow
from sdk._present import event_json, to_json
from sdk.client.types import HistoryEvent, to_history_event
from sdk.examples.order import Order
from sdk.testing import Replayer, WorkflowHistory
from tests.golden import all_files, load
from tests.golden.workflows import Party, T, step
from tests.unit.test_golden import TwoStepsChanged

pytestmark = pytest.mark.anyio
codec = MsgpackCodec()
CURRENT = [p for p in all_files() if ".flags-1-2-3." in p.name]


def public_events(path: Path) -> list[HistoryEvent]:
    """The golden history as handle.fetch_history() yields it (payloads decoded)."""
    return [to_history_event(e, codec) for e in load(path).events]


def show_json(path: Path) -> str:
    """The golden history as `redurable workflow show -o json` prints it."""
    return to_json([event_json(e) for e in public_events(path)])


def golden(name: str) -> Path:
    return next(p for p in CURRENT if p.name.startswith(name + "."))


@pytest.mark.parametrize("path", CURRENT, ids=lambda p: p.stem)
async def test_every_golden_history_replays_from_its_public_form(path: Path) -> None:
    replayer = Replayer(workflows=[load(path).workflow_class()])
    result = await replayer.replay_workflow(public_events(path))
    assert result.replay_failure is None
    assert result.history.run_id == load(path).run_id
    # The same through the JSON the CLI prints.
    result = await replayer.replay_workflow(show_json(path))
    assert result.replay_failure is None


async def test_changed_code_raises_naming_the_event_and_the_command() -> None:
    replayer = Replayer(workflows=[TwoStepsChanged])
    with pytest.raises(NondeterminismError) as info:
        await replayer.replay_workflow(public_events(golden("nondeterministic")))
    message = str(info.value)
    assert "TimerStarted" in message
    assert "ScheduleActivity(activity_id=2, activity_type='step')" in message


async def test_failure_returned_when_asked_not_to_raise() -> None:
    replayer = Replayer(workflows=[TwoStepsChanged])
    result = await replayer.replay_workflow(
        public_events(golden("nondeterministic")), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError)


async def test_replay_workflows_collects_failures_by_run_id(tmp_path: Path) -> None:
    good = tmp_path / "party.json"
    good.write_text(show_json(golden("party")))
    bad = tmp_path / "two.json"
    bad.write_text(show_json(golden("nondeterministic")))
    replayer = Replayer(workflows=[Party, TwoStepsChanged])
    results = await replayer.replay_workflows([good, bad], raise_on_replay_failure=False)
    assert list(results.replay_failures) == [load(golden("nondeterministic")).run_id]
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflows([good, str(bad)])


async def test_history_from_a_file_and_a_document(tmp_path: Path) -> None:
    path = tmp_path / "order-7.json"
    path.write_text(show_json(golden("order_completed")))
    history = WorkflowHistory.from_file(path)
    assert history.workflow_id == "order-7"
    assert history.events[0].type == "WorkflowExecutionStarted"
    doc = {"workflow_id": "o-1", "events": json.loads(path.read_text())}
    assert WorkflowHistory.from_json(None, doc).workflow_id == "o-1"
    await Replayer(workflows=[Order]).replay_workflow(WorkflowHistory.from_json(None, doc))


async def test_running_workflow_replays_its_complete_activations() -> None:
    events = public_events(golden("party"))
    # Cut after the third activation's boundary inputs: a run still going.
    cut = [e.event_id for e in events if e.type == "WorkflowTaskCompleted"][2] + 1
    await Replayer(workflows=[Party]).replay_workflow(events[:cut])


@workflow.defn(name="TwoSteps")
class TwoStepsRaises:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(step, "first", start_to_close_timeout=T)
        raise RuntimeError("a bug in the new version")


async def test_code_that_raises_during_replay_fails_the_replay() -> None:
    with pytest.raises(Exception, match="RuntimeError: a bug in the new version"):
        await Replayer(workflows=[TwoStepsRaises]).replay_workflow(
            public_events(golden("nondeterministic"))
        )


async def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    replayer = Replayer(workflows=[Party])
    with pytest.raises(
        InvalidArgumentError, match="workflow type 'Order'; this Replayer has Party"
    ):
        await replayer.replay_workflow(public_events(golden("order_completed")))
    with pytest.raises(InvalidArgumentError, match="cannot read history file"):
        await replayer.replay_workflow(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("not json")
    with pytest.raises(InvalidArgumentError, match="is not JSON"):
        await replayer.replay_workflow(tmp_path / "x.json")
    with pytest.raises(InvalidArgumentError, match="starts with WorkflowExecutionStarted"):
        await replayer.replay_workflow(public_events(golden("party"))[1:])
    with pytest.raises(InvalidArgumentError, match="cannot replay a int"):
        await replayer.replay_workflow(3)
    with pytest.raises(InvalidArgumentError, match="not an event"):
        await replayer.replay_workflow('[{"type": "x"}]')
    with pytest.raises(InvalidArgumentError, match="at least one workflow"):
        Replayer(workflows=[])
