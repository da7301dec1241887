"""The replay machine rejects a history that the code no longer produces: other
activities, extra or missing commands, a gap, a close that comes earlier."""

from __future__ import annotations

import pytest

from engine import events as ev
from engine.errors import NondeterminismError
from sdk import workflow
from tests.unit.machine_workflows import (
    Recorder,
    VersionedExtraCommand,
    VersionedMissingCommand,
    VersionedOtherActivity,
    VersionedTimerFirst,
    VersionedV1,
)
from tests.unit.sim import Sim, replay

# --- non-determinism --------------------------------------------------------------------


def versioned_history() -> list[ev.Event]:
    sim = Sim(VersionedV1)
    sim.activate()
    sim.complete_activity(1, None)
    sim.activate()
    sim.fire_timer(1)
    sim.activate()
    assert sim.events[-1].type == "WorkflowExecutionCompleted"
    return sim.events


def test_replay_with_same_code_is_fine() -> None:
    _, commands = replay(VersionedV1, versioned_history())
    assert commands == []


def test_nondeterminism_mismatched_activity_type() -> None:
    with pytest.raises(NondeterminismError, match=r"activity_type='one'.*'two'"):
        replay(VersionedOtherActivity, versioned_history())


def test_nondeterminism_extra_command() -> None:
    with pytest.raises(NondeterminismError, match="records no more commands"):
        replay(VersionedExtraCommand, versioned_history())


def test_nondeterminism_missing_command() -> None:
    with pytest.raises(NondeterminismError, match=r"TimerStarted.*did not issue it"):
        replay(VersionedMissingCommand, versioned_history())


def test_nondeterminism_command_kind_changed() -> None:
    with pytest.raises(NondeterminismError, match=r"ActivityTaskScheduled.*StartTimer"):
        replay(VersionedTimerFirst, versioned_history())


def test_history_gap_is_detected() -> None:
    events = versioned_history()
    del events[3]
    with pytest.raises(NondeterminismError):
        replay(VersionedV1, events)


def test_nondeterminism_code_that_closes_earlier() -> None:
    """v2 completes where v1 waited for a signal. Since flag 2 the boundary records a
    close dropped because events arrived, so this close is told apart and rejected."""
    sim = Sim(Recorder)
    sim.activate()
    sim.signal("add", "x")
    sim.activate()
    sim.signal("finish")
    sim.activate()
    with pytest.raises(NondeterminismError):
        replay(RecorderThatDoesNotWait, sim.events)


@workflow.defn(name="Recorder")
class RecorderThatDoesNotWait:
    @workflow.signal
    def add(self, item: str) -> None: ...

    @workflow.signal
    def finish(self) -> None: ...

    @workflow.run
    async def run(self) -> list[str]:
        return []
