"""The replay machine's child and external workflow side, driven by plain event lists:
the commands a child start, a signal and a cancel issue, their outcomes as events,
replay of the recorded history, and the non-determinism a changed child type raises."""

from __future__ import annotations

from typing import Any

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.errors import (
    ApplicationError,
    ChildWorkflowError,
    NondeterminismError,
    WorkflowAlreadyStartedError,
    to_failure,
)
from sdk import ParentClosePolicy, workflow
from tests.unit.sim import Sim, codec, replay


@workflow.defn
class Kid:
    @workflow.run
    async def run(self, n: int) -> int:
        return n


@workflow.defn
class Family:
    """Runs a child and reports its result, or how it did not complete."""

    @workflow.run
    async def run(self, n: int) -> str:
        try:
            value = await workflow.execute_child_workflow(
                Kid.run, n, id="kid-1", parent_close_policy=ParentClosePolicy.ABANDON)
        except ChildWorkflowError as err:
            return f"child:{type(err.cause).__name__}:{err.cause}"
        except WorkflowAlreadyStartedError as err:
            return f"already:{err.run_id}"
        return f"value:{value}"


@workflow.defn
class Canceller:
    @workflow.run
    async def run(self) -> str:
        handle = await workflow.start_child_workflow(Kid.run, 1, id="kid-2")
        handle.cancel()
        try:
            await handle
        except ChildWorkflowError as err:
            return type(err.cause).__name__
        return "completed"


@workflow.defn
class Messenger:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.get_external_workflow_handle("other").signal("ping", 1)
        except ApplicationError as err:
            return f"failed:{err.type}"
        return "sent"


def started(sim: Sim, seq: int = 1, workflow_id: str = "kid-1") -> str:
    initiated = next(
        e for e in sim.events
        if isinstance(e, ev.StartChildWorkflowExecutionInitiated) and e.seq == seq
    )
    sim.add(ev.ChildWorkflowExecutionStarted, seq=seq, workflow_id=workflow_id,
            run_id=initiated.run_id)
    return initiated.run_id


def result_of(commands: list[cmd.Command]) -> Any:
    assert isinstance(commands[-1], cmd.CompleteWorkflow), commands
    return codec.decode(commands[-1].result)


def test_child_start_command_and_result() -> None:
    sim = Sim(Family, 4)
    commands = sim.activate()
    assert len(commands) == 1
    start = commands[0]
    assert isinstance(start, cmd.StartChildWorkflow)
    assert (start.seq, start.workflow_id, start.workflow_type, start.task_queue) == (
        1, "kid-1", "Kid", "q")
    assert start.parent_close_policy == "ABANDON"
    assert codec.decode(start.input) == [4]
    run_id = started(sim)
    assert sim.activate() == []  # started: the code waits for the result
    sim.add(ev.ChildWorkflowExecutionCompleted, seq=1, workflow_id="kid-1", run_id=run_id,
            result=codec.encode(4))
    assert result_of(sim.activate()) == "value:4"
    machine, again = replay(Family, sim.events)
    assert again == [] and machine.closed


def test_child_run_id_is_the_same_on_replay() -> None:
    sim = Sim(Family, 1)
    first = sim.activate()[0]
    machine, _ = replay(Family, sim.events)
    assert isinstance(first, cmd.StartChildWorkflow)
    assert machine.pending_child_count == 1
    assert machine._child_state.children[1].run_id == first.run_id


def test_child_failure_cause() -> None:
    sim = Sim(Family, 1)
    sim.activate()
    run_id = started(sim)
    failure = to_failure(ApplicationError("bad", type="Bad"))
    sim.add(ev.ChildWorkflowExecutionFailed, seq=1, workflow_id="kid-1", run_id=run_id,
            failure=failure)
    assert result_of(sim.activate()) == "child:ApplicationError:bad"


def test_child_terminated_and_timed_out_causes() -> None:
    for event_type, failure, expected in (
        (ev.ChildWorkflowExecutionTerminated, {"message": "ops", "kind": "terminated"},
         "child:TerminatedError:ops"),
        (ev.ChildWorkflowExecutionTimedOut,
         {"message": "late", "kind": "workflow_timeout", "timeout_type": "run"},
         "child:WorkflowTimeoutError:late"),
    ):
        sim = Sim(Family, 1)
        sim.activate()
        run_id = started(sim)
        sim.add(event_type, seq=1, workflow_id="kid-1", run_id=run_id, failure=failure)
        assert result_of(sim.activate()) == expected


def test_child_start_conflict_raises_already_started() -> None:
    sim = Sim(Family, 1)
    sim.activate()
    sim.add(ev.StartChildWorkflowExecutionFailed, seq=1, workflow_id="kid-1",
            cause="WORKFLOW_ALREADY_EXISTS", run_id="someone")
    assert result_of(sim.activate()) == "already:someone"
    _, again = replay(Family, sim.events)
    assert again == []


def test_close_without_start_report_resolves_both() -> None:
    """The engine records Started before a close it gets first; a close alone (an
    older engine's order) still resolves the start and the result."""
    sim = Sim(Family, 2)
    sim.activate()
    sim.add(ev.ChildWorkflowExecutionCompleted, seq=1, workflow_id="kid-1", run_id="r",
            result=codec.encode(2))
    assert result_of(sim.activate()) == "value:2"


def test_cancelling_a_child_asks_it_to_cancel_and_waits_for_its_close() -> None:
    sim = Sim(Canceller)
    sim.activate()
    run_id = started(sim, workflow_id="kid-2")
    commands = sim.activate()
    assert commands == [cmd.RequestCancelExternalWorkflow(1, "kid-2", run_id, True)]
    sim.add(ev.ExternalWorkflowExecutionCancelRequested, seq=1, workflow_id="kid-2",
            run_id=run_id)
    assert sim.activate() == []  # waits for the child's close
    sim.add(ev.ChildWorkflowExecutionCanceled, seq=1, workflow_id="kid-2", run_id=run_id)
    assert result_of(sim.activate()) == "CancelledError"
    _, again = replay(Canceller, sim.events)
    assert again == []


def test_external_signal_success_and_failure() -> None:
    sim = Sim(Messenger)
    commands = sim.activate()
    assert len(commands) == 1
    signal = commands[0]
    assert isinstance(signal, cmd.SignalExternalWorkflow)
    assert (signal.workflow_id, signal.signal_name, signal.child_workflow_only) == (
        "other", "ping", False)
    sim.add(ev.ExternalWorkflowExecutionSignaled, seq=1, workflow_id="other", run_id="r")
    assert result_of(sim.activate()) == "sent"

    sim = Sim(Messenger)
    sim.activate()
    sim.add(ev.SignalExternalWorkflowExecutionFailed, seq=1, workflow_id="other",
            cause="EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND")
    assert result_of(sim.activate()) == "failed:EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND"
    _, again = replay(Messenger, sim.events)
    assert again == []


def test_changed_child_type_is_nondeterministic() -> None:
    sim = Sim(Family, 1)
    sim.activate()
    changed = [
        ev.StartChildWorkflowExecutionInitiated(**{**e.__dict__, "workflow_type": "Other"})
        if isinstance(e, ev.StartChildWorkflowExecutionInitiated) else e
        for e in sim.events
    ]
    with pytest.raises(NondeterminismError, match="StartChildWorkflow"):
        replay(Family, changed)


def test_child_error_round_trips_on_the_wire() -> None:
    from engine.errors import CancelledError, from_failure

    error = ChildWorkflowError("child failed", workflow_id="k", run_id="r", workflow_type="Kid",
                               cause=CancelledError("gone"))
    back = from_failure(to_failure(error))
    assert isinstance(back, ChildWorkflowError)
    assert (back.workflow_id, back.run_id, back.workflow_type) == ("k", "r", "Kid")
    assert isinstance(back.cause, CancelledError)


@workflow.defn
class ArgsForm:
    @workflow.run
    async def run(self) -> None:
        await workflow.start_child_workflow("Kid", args=[7], id="kid-3", task_queue="other")


@workflow.defn
class BadChildOptions:
    @workflow.run
    async def run(self, which: str) -> None:
        if which == "both":
            await workflow.start_child_workflow("Kid", 1, args=[1])
        elif which == "retry":
            await workflow.start_child_workflow("Kid", retry_policy=workflow_retry())
        else:
            await workflow.start_child_workflow("Kid", id="a{b}")


def workflow_retry() -> Any:
    from sdk import RetryPolicy

    return RetryPolicy()


def test_args_form_and_task_queue() -> None:
    sim = Sim(ArgsForm)
    start = sim.activate()[0]
    assert isinstance(start, cmd.StartChildWorkflow)
    assert codec.decode(start.input) == [7]
    assert (start.task_queue, start.parent_close_policy) == ("other", "TERMINATE")


@pytest.mark.parametrize(
    ("which", "message"),
    [("both", "positionally or as args="), ("retry", "retry_policy"), ("id", "workflow id")],
)
def test_bad_child_options_fail_at_the_call(which: str, message: str) -> None:
    from engine.machine import ActivationFailed

    sim = Sim(BadChildOptions, which)
    with pytest.raises(ActivationFailed) as info:
        sim.activate()
    assert message in str(info.value.__cause__)
