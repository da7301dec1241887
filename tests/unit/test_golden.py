"""Replay the recorded golden histories (tests/golden/*.json) with the current code.

Each one must replay without a NondeterminismError to the result it recorded; one is
replayed against changed code and must raise it. Record them again with
`python -m scripts.record_golden` (only on purpose: see that script).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.codec import MsgpackCodec
from engine.errors import NondeterminismError, to_failure
from engine.machine import LOGIC_FLAGS, WorkflowInfo, WorkflowMachine
from sdk import workflow
from sdk._definitions import workflow_definition
from sdk.worker.workflow_runner import DefinitionHooks
from tests.golden import Golden, all_files, event_from_json, event_to_json, load
from tests.golden.workflows import T, step

codec = MsgpackCodec()


class OutcomeHooks(DefinitionHooks):
    """Definition hooks that also keep how the run coroutine ended."""

    def __init__(self, definition: Any) -> None:
        super().__init__(definition)
        self.outcome: tuple[str, Any] | None = None

    def start(self, args: list[Any]) -> Any:
        return self._run(super().start(args))

    async def _run(self, coro: Any) -> Any:
        try:
            value = await coro
        except BaseException as exc:
            self.outcome = ("error", exc)
            raise
        self.outcome = ("ok", value)
        return value


def replay_golden(golden: Golden, workflow_cls: type | None = None) -> OutcomeHooks:
    definition = workflow_definition(workflow_cls or golden.workflow_class())
    hooks = OutcomeHooks(definition)
    info = WorkflowInfo(golden.workflow_id, golden.run_id, definition.name, "golden")
    machine = WorkflowMachine(info, hooks, codec)
    commands = machine.activate(golden.events, golden.events[-1].timestamp)
    assert commands == [], "a closed history must need no new commands"
    assert machine.closed
    return hooks


GOLDEN = [p for p in all_files() if not p.name.startswith("nondeterministic.")]
NONDETERMINISTIC = [p for p in all_files() if p.name.startswith("nondeterministic.")]


def test_golden_files_exist() -> None:
    names = {load(p).name for p in all_files()}
    assert {"order_completed", "party", "cancelled", "nondeterministic", "updates"} <= names
    assert {"patch_before", "patch_new_run", "patch_deprecated", "patch_removed"} <= names
    assert "search_attributes" in names
    assert NONDETERMINISTIC


def test_every_history_is_recorded_under_the_current_flags() -> None:
    """The flags new activations run with: each golden history has a file recorded
    under them (scripts/record_golden.py names the file after them)."""
    assert LOGIC_FLAGS == "1,2,3"
    current = {p.name.split(".")[0] for p in all_files() if ".flags-1-2-3." in p.name}
    assert current == {load(p).name for p in all_files()}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_history_replays(path: Path) -> None:
    golden = load(path)
    assert [e.event_id for e in golden.events] == list(range(1, len(golden.events) + 1))
    hooks = replay_golden(golden)
    assert hooks.outcome is not None
    kind, value = hooks.outcome
    if golden.status == "COMPLETED":
        assert kind == "ok"
        # Through the codec, as the result was stored (tuples become lists).
        assert codec.decode(codec.encode(value)) == golden.result
    elif golden.status == "FAILED":
        assert kind == "error"
        assert golden.failure is not None
        replayed = to_failure(value)
        assert replayed["type"] == golden.failure["type"]
        assert replayed["message"] == golden.failure["message"]
        assert replayed.get("cause", {}).get("type") == golden.failure.get("cause", {}).get("type")
    elif golden.status == "CANCELED":
        assert kind == "error"
        assert golden.events[-1].type == "WorkflowExecutionCanceled"
    else:  # pragma: no cover - a new kind of golden file needs a check here
        pytest.fail(f"no check for status {golden.status}")


@pytest.mark.parametrize("path", all_files(), ids=lambda p: p.stem)
def test_golden_events_round_trip(path: Path) -> None:
    """The JSON form and the stream-entry form of every event are lossless."""
    for event in load(path).events:
        assert event_from_json(event_to_json(event)) == event


# The non-determinism golden file was recorded from tests.golden.workflows.TwoSteps.
@workflow.defn(name="TwoSteps")
class TwoStepsChanged:
    """A "deploy" that swapped the timer and the second activity."""

    @workflow.run
    async def run(self) -> str:
        first: str = await workflow.execute_activity(step, "first", start_to_close_timeout=T)
        second: str = await workflow.execute_activity(step, "second", start_to_close_timeout=T)
        await workflow.sleep(0.05)
        return first + " " + second


@pytest.mark.parametrize("path", NONDETERMINISTIC, ids=lambda p: p.stem)
def test_golden_nondeterministic_history_replays_with_its_code(path: Path) -> None:
    golden = load(path)
    hooks = replay_golden(golden)
    assert hooks.outcome == ("ok", golden.result)


@pytest.mark.parametrize("path", NONDETERMINISTIC, ids=lambda p: p.stem)
def test_golden_nondeterministic_history_raises_with_changed_code(path: Path) -> None:
    golden = load(path)
    with pytest.raises(NondeterminismError, match=r"TimerStarted.*ScheduleActivity") as info:
        replay_golden(golden, TwoStepsChanged)
    assert "activity_type='step'" in str(info.value)


def test_golden_close_events_are_last() -> None:
    for path in all_files():
        events = load(path).events
        assert events[-1].type in ev.CLOSE_TYPES
        assert not any(e.type in ev.CLOSE_TYPES for e in events[:-1])
        assert isinstance(events[0], ev.WorkflowExecutionStarted)
