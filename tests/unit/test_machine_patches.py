"""workflow.patched / deprecate_patch on the replay machine, with plain event lists:
every row of Temporal's patch table (docs/versioning.md), over the four deploys of
tests.golden.workflows' PatchedOrder."""

from __future__ import annotations

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.errors import InvalidArgumentError, NondeterminismError
from sdk import workflow
from tests.golden.workflows import (
    PatchedOrderV1,
    PatchedOrderV2,
    PatchedOrderV3,
    PatchedOrderV4,
    T,
)
from tests.unit.sim import Sim, codec, instance, replay


def run_order(workflow_cls: type) -> Sim:
    """One PatchedOrder run to its end: charged, told, picked up."""
    sim = Sim(workflow_cls, 3)
    assert [type(c) for c in sim.activate()] == [cmd.ScheduleActivity]
    sim.complete_activity(1, "CHARGE 3")
    sim.activate()
    sim.complete_activity(2, "told")
    assert sim.activate() == []
    sim.signal("picked_up")
    assert isinstance(sim.activate()[-1], cmd.CompleteWorkflow)
    return sim


def markers(events: list[ev.Event]) -> list[ev.MarkerRecorded]:
    return [e for e in events if isinstance(e, ev.MarkerRecorded)]


def replays(workflow_cls: type, events: list[ev.Event]) -> PatchedOrderV1:
    machine, commands = replay(workflow_cls, events)
    assert commands == [] and machine.closed
    order: PatchedOrderV1 = instance(machine)
    return order


# --- patched ----------------------------------------------------------------------------


def test_a_new_run_takes_the_new_branch_and_records_one_marker() -> None:
    sim = Sim(PatchedOrderV2, 3)
    sim.activate()
    sim.complete_activity(1, "CHARGE 3")
    commands = sim.activate()
    # The marker is a command at the place of the call, before the branch's own.
    assert commands[0] == cmd.SetPatchMarker("send-sms", deprecated=False)
    assert isinstance(commands[1], cmd.ScheduleActivity)
    assert commands[1].activity_type == "send_sms"
    sim.complete_activity(2, "sms: paid")
    sim.activate()
    sim.signal("picked_up")
    sim.activate()
    # Asked again after the wait: the same answer, and no second marker.
    assert sim.instance.answers == [True, True]
    [marker] = markers(sim.events)
    assert (marker.marker_name, marker.patch_id, marker.deprecated) == ("core_patch", "send-sms", 0)
    assert ev.encode_event(marker)["marker_name"] == "core_patch"  # plain text in XRANGE


def test_its_history_replays_on_the_new_branch() -> None:
    order = replays(PatchedOrderV2, run_order(PatchedOrderV2).events)
    assert (order.channel, order.answers) == ("sms", [True, True])


def test_an_old_history_without_the_marker_replays_on_the_old_branch() -> None:
    order = replays(PatchedOrderV2, run_order(PatchedOrderV1).events)
    assert (order.channel, order.answers) == ("push", [False, False])


def test_an_old_run_past_the_patch_goes_on_live_with_the_old_answer() -> None:
    """Started on v1, picked up by a v2 worker with no cache: the replay answers False
    and that answer holds in the live activation after it (no marker is written)."""
    old = Sim(PatchedOrderV1, 3)
    old.activate()
    old.complete_activity(1, "CHARGE 3")
    old.activate()
    old.complete_activity(2, "PUSH: PAID")
    old.activate()
    old.signal("picked_up")
    machine, commands = replay(PatchedOrderV2, old.events)
    assert isinstance(commands[-1], cmd.CompleteWorkflow)
    assert codec.decode(commands[-1].result) == "PUSH: PAID"
    assert not any(isinstance(c, cmd.SetPatchMarker) for c in commands)
    assert instance(machine).answers == [False, False]


def test_an_old_run_that_reaches_the_patch_on_new_code_takes_the_new_branch() -> None:
    """As in Temporal: the branch is decided where the call runs. A run started on v1
    that had not reached it yet takes the new branch on v2 (nothing recorded differs)."""
    old = Sim(PatchedOrderV1, 3)
    old.activate()
    old.complete_activity(1, "CHARGE 3")
    _, commands = replay(PatchedOrderV2, old.events)
    assert commands[0] == cmd.SetPatchMarker("send-sms")
    assert isinstance(commands[1], cmd.ScheduleActivity)
    assert commands[1].activity_type == "send_sms"


def test_old_code_fails_on_a_history_with_the_marker() -> None:
    """A rollback to v1 while v2's runs are open: the marker names the patch."""
    with pytest.raises(NondeterminismError, match=r"MarkerRecorded.*patch_id='send-sms'"):
        replay(PatchedOrderV1, run_order(PatchedOrderV2).events)


# --- deprecate_patch and removal --------------------------------------------------------


def test_deprecate_patch_records_a_deprecated_marker() -> None:
    [marker] = markers(run_order(PatchedOrderV3).events)
    assert (marker.patch_id, marker.deprecated) == ("send-sms", 1)


@pytest.mark.parametrize("recorded_by", [PatchedOrderV2, PatchedOrderV3, PatchedOrderV4])
def test_deprecate_patch_replays_histories_with_and_without_the_marker(
    recorded_by: type,
) -> None:
    assert replays(PatchedOrderV3, run_order(recorded_by).events).channel == "sms"


def test_deprecate_patch_does_not_replay_the_old_branch() -> None:
    """Deprecating is for when no run that took the old branch is left."""
    with pytest.raises(NondeterminismError, match=r"activity_type='step'.*send_sms"):
        replay(PatchedOrderV3, run_order(PatchedOrderV1).events)


def test_a_removed_call_skips_a_deprecated_marker() -> None:
    assert replays(PatchedOrderV4, run_order(PatchedOrderV3).events).channel == "sms"


def test_a_removed_call_fails_on_a_marker_that_was_not_deprecated() -> None:
    """Temporal's "no matching command": deprecate first, then remove."""
    with pytest.raises(NondeterminismError, match="deprecate_patch") as info:
        replay(PatchedOrderV4, run_order(PatchedOrderV2).events)
    assert "patch_id='send-sms'" in str(info.value)


def test_patched_replays_a_deprecated_marker() -> None:
    """Rolling back from v3 to v2: the marker is there, deprecated or not."""
    order = replays(PatchedOrderV2, run_order(PatchedOrderV3).events)
    assert (order.channel, order.answers) == ("sms", [True, True])


# --- order and placement ----------------------------------------------------------------


@workflow.defn(name="TwoPatches")
class TwoPatches:
    @workflow.run
    async def run(self) -> list[bool]:
        return [workflow.patched("a"), workflow.patched("b"), workflow.patched("a")]


@workflow.defn(name="TwoPatches")
class TwoPatchesSwapped:
    @workflow.run
    async def run(self) -> list[bool]:
        return [workflow.patched("b"), workflow.patched("a")]


def test_markers_are_matched_in_the_order_they_were_recorded() -> None:
    sim = Sim(TwoPatches)
    commands = sim.activate()
    assert commands[:2] == [cmd.SetPatchMarker("a"), cmd.SetPatchMarker("b")]
    assert codec.decode(commands[-1].result) == [True, True, True]  # type: ignore[union-attr]
    replay(TwoPatches, sim.events)
    with pytest.raises(NondeterminismError, match=r"patch_id='a'.*SetPatchMarker"):
        replay(TwoPatchesSwapped, sim.events)


@workflow.defn
class PatchInQuery:
    @workflow.query
    def peek(self) -> bool:
        return workflow.patched("q")

    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(T)


def test_patched_in_a_query_handler_is_an_error() -> None:
    sim = Sim(PatchInQuery)
    sim.activate()
    with pytest.raises(RuntimeError, match="not allowed in a query handler"):
        sim.machine.query("peek", [])


@workflow.defn
class BadPatchIds:
    @workflow.run
    async def run(self) -> list[str]:
        errors = []
        for bad in ("", "x" * 129, "tab\there", 7):
            try:
                workflow.patched(bad)  # type: ignore[arg-type]
            except InvalidArgumentError as exc:
                errors.append(str(exc))
        return errors


def test_bad_patch_ids_are_refused_at_the_call() -> None:
    sim = Sim(BadPatchIds)
    commands = sim.activate()
    assert not any(isinstance(c, cmd.SetPatchMarker) for c in commands)
    errors = codec.decode(commands[-1].result)  # type: ignore[union-attr]
    assert len(errors) == 4
    assert "patch id must not be empty" in errors[0]
    assert "over the limit of 128" in errors[1]
    assert "forbidden character" in errors[2]
    assert "must be a string" in errors[3]


def test_patched_outside_workflow_code_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not in workflow code"):
        workflow.patched("x")
