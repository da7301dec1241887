"""The replay machine driven by plain event lists: no Redis, no clock. Live activations
and full replay; non-determinism is in test_machine_nondeterminism.py, the workflow
API inside the machine (now, random, asyncio, signal handler failures) in
test_machine_workflow_api.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.errors import ApplicationError, NondeterminismError, to_failure
from engine.machine import LOGIC_FLAGS, ActivationFailed
from tests.unit.machine_workflows import (
    Buggy,
    Cancellable,
    Failing,
    Gatherer,
    Greeter,
    Recorder,
    Waiter,
    completed_value,
    scheduled,
)
from tests.unit.sim import Sim, codec, instance, replay

# --- live activations ---------------------------------------------------------------------


def test_live_activations_produce_commands() -> None:
    sim = Sim(Greeter, "ann")
    commands = sim.activate()
    assert scheduled(commands) == [(1, "greet")]
    assert isinstance(commands[0], cmd.ScheduleActivity)
    assert codec.decode(commands[0].input) == ["ann"]
    assert commands[0].task_queue == "q"
    assert commands[0].options["start_to_close_ms"] == 10_000
    assert sim.instance.stage == "greeting"

    sim.complete_activity(1, "hello ann")
    assert sim.activate() == [cmd.StartTimer(1, 5000)]
    assert sim.instance.stage == "sleeping"

    sim.fire_timer(1)
    assert completed_value(sim.activate()) == "hello ann!"
    assert sim.machine.query("stage_now", []) == "done"
    assert [e.type for e in sim.events] == [
        "WorkflowExecutionStarted",
        "WorkflowTaskCompleted",
        "ActivityTaskScheduled",
        "ActivityTaskCompleted",
        "WorkflowTaskCompleted",
        "TimerStarted",
        "TimerFired",
        "WorkflowTaskCompleted",
        "WorkflowExecutionCompleted",
    ]


def test_unknown_signal_is_dropped_with_a_note_only_when_live() -> None:
    sim = Sim(Greeter, "ann")
    sim.activate()
    sim.signal("unknown_signal")  # dropped: no handler, nothing to decide
    [note] = sim.activate()  # but the drop is noted, with the reason
    assert note == cmd.RecordSignalDropped(
        4, "unknown_signal",
        "workflow Greeter has no signal handler named 'unknown_signal' (handlers: none)")
    # Replayed, the same drop notes nothing: only a live activation writes its notes.
    _, commands = replay(Greeter, sim.events)
    assert commands == []


def test_full_replay_reproduces_state() -> None:
    sim = Sim(Greeter, "bob")
    sim.activate()
    sim.complete_activity(1, "hi bob")
    sim.activate()
    # Mid-run: a fresh machine reaches the same state and issues nothing new.
    machine, commands = replay(Greeter, sim.events)
    assert commands == []
    assert instance(machine).stage == "sleeping"
    assert machine.last_event_id == len(sim.events)
    assert not machine.replaying

    sim.fire_timer(1)
    sim.activate()
    machine, commands = replay(Greeter, sim.events)
    assert commands == []
    assert machine.closed
    assert machine.query("stage_now", []) == "done"


def test_replay_then_live_activation() -> None:
    """A worker without a cached machine: replay complete activations, then run the
    trailing inputs live and get their commands."""
    sim = Sim(Greeter, "cy")
    sim.activate()
    sim.complete_activity(1, "yo cy")
    machine, commands = replay(Greeter, sim.events)
    assert commands == [cmd.StartTimer(1, 5000)]
    assert instance(machine).stage == "sleeping"


def test_queries_replay_only_complete_activations() -> None:
    sim = Sim(Greeter, "di")
    sim.activate()
    sim.complete_activity(1, "hey")  # not yet handled by a workflow task
    machine, _ = replay(Greeter, sim.events[:0])  # never ran: initial state
    assert machine.query("stage_now", []) == "new"
    from tests.unit.sim import make_machine

    machine = make_machine(Greeter)
    machine.replay(sim.events)
    assert machine.query("stage_now", []) == "greeting"


def test_gather_over_activities_and_timer() -> None:
    sim = Sim(Gatherer)
    commands = sim.activate()
    assert scheduled(commands) == [(1, "a"), (2, "b")]
    assert commands[2] == cmd.StartTimer(1, 1000)
    # Results arrive out of order, over several activations.
    sim.complete_activity(2, "B")
    assert sim.activate() == []
    sim.fire_timer(1)
    sim.complete_activity(1, "A")
    assert completed_value(sim.activate()) == ["A", "B", None]
    _, commands = replay(Gatherer, sim.events)
    assert commands == []


def test_wait_condition_satisfied_cancels_its_timer() -> None:
    sim = Sim(Waiter)
    assert sim.activate() == [cmd.StartTimer(1, 30_000)]
    sim.signal("proceed")
    commands = sim.activate()
    assert commands[0] == cmd.CancelTimer(1)
    assert scheduled(commands) == [(1, "after_signal")]
    # The fire of the cancelled timer may still come (it was already on its way).
    sim.fire_timer(1)
    assert sim.activate() == []
    sim.complete_activity(1, None)
    assert completed_value(sim.activate()) == "signalled"
    machine, commands = replay(Waiter, sim.events)
    assert commands == []
    assert machine.closed


def test_wait_condition_timeout() -> None:
    sim = Sim(Waiter)
    sim.activate()
    sim.fire_timer(1)
    assert completed_value(sim.activate()) == "timed out"
    _, commands = replay(Waiter, sim.events)
    assert commands == []


def test_signal_and_timer_in_one_activation() -> None:
    """Signal and timeout fire land in one activation, the signal first: the code runs
    after each input, so it sees the signal before the timeout (flag
    WorkflowLogicFlag.STEP_PER_INPUT). The timer needs no CancelTimer: its fire is recorded."""
    sim = Sim(Waiter)
    sim.activate()
    sim.signal("proceed")
    sim.fire_timer(1)
    commands = sim.activate()
    assert len(commands) == 1
    assert scheduled(commands) == [(1, "after_signal")]
    sim.complete_activity(1, None)
    assert completed_value(sim.activate()) == "signalled"
    _, commands = replay(Waiter, sim.events)
    assert commands == []


def old_engine_history(
    workflow_cls: type, *inputs: tuple[type[ev.Event], dict[str, Any]], close: cmd.Command
) -> list[ev.Event]:
    """One activation after the first, as an engine without flags recorded it."""
    sim = Sim(workflow_cls)
    sim.activate(flags="")
    for event_type, attrs in inputs:
        sim.add(event_type, **attrs)
    sim.add(ev.WorkflowTaskCompleted, worker="old", now=sim.now_ms, flags="")
    event_type, attrs = cmd.to_event(close)
    sim.add(event_type, **attrs)
    return sim.events


def test_history_without_flags_replays_the_old_way() -> None:
    """Before WorkflowLogicFlag.STEP_PER_INPUT, all inputs were applied, then the code
    ran once: the timer's callback ran before conditions were checked and the wait timed
    out. Such histories must replay as they ran."""
    inputs = (
        (ev.WorkflowExecutionSignaled, {"signal_name": "proceed", "input": codec.encode([])}),
        (ev.TimerFired, {"timer_id": 1}),
    )
    old = old_engine_history(Waiter, *inputs, close=cmd.CompleteWorkflow(codec.encode("timed out")))
    machine, commands = replay(Waiter, old)
    assert commands == []
    assert machine.closed
    # The same events under the current flag are another decision: a mismatch.
    relabelled = [
        dataclasses.replace(e, flags=LOGIC_FLAGS) if isinstance(e, ev.WorkflowTaskCompleted) else e
        for e in old
    ]
    with pytest.raises(NondeterminismError, match=r"CompleteWorkflow|ScheduleActivity"):
        replay(Waiter, relabelled)


def test_cancellation_runs_cleanup_then_cancels() -> None:
    sim = Sim(Cancellable)
    assert scheduled(sim.activate()) == [(1, "long")]
    sim.cancel("user asked")
    commands = sim.activate()
    assert commands[0] == cmd.RequestCancelActivity(1)
    assert scheduled(commands) == [(2, "cleanup")]
    assert sim.machine.cancel_requested
    sim.complete_activity(2, None)
    assert sim.activate() == [cmd.CancelWorkflow()]
    assert sim.events[-1].type == "WorkflowExecutionCanceled"
    # A late result of the cancelled activity is ignored.
    machine, commands = replay(Cancellable, sim.events)
    assert commands == []
    assert machine.closed


def test_cancel_in_the_first_activation() -> None:
    """The code starts, then sees the cancel at its first wait and cleans up."""
    sim = Sim(Cancellable)
    sim.cancel()
    commands = sim.activate()
    assert scheduled(commands) == [(1, "long"), (2, "cleanup")]
    assert commands[1] == cmd.RequestCancelActivity(1)
    sim.complete_activity(2, None)
    assert sim.activate() == [cmd.CancelWorkflow()]
    _, commands = replay(Cancellable, sim.events)
    assert commands == []


def test_cancel_in_the_first_activation_of_an_old_history() -> None:
    """Without flags, the code was cancelled before its first step."""
    sim = Sim(Cancellable)
    sim.cancel()
    sim.add(ev.WorkflowTaskCompleted, worker="old", now=sim.now_ms, flags="")
    sim.add(ev.WorkflowExecutionCanceled)
    machine, commands = replay(Cancellable, sim.events)
    assert commands == []
    assert machine.closed


def test_signals_applied_in_order() -> None:
    sim = Sim(Recorder)
    sim.activate()
    for i in range(5):
        sim.signal("add", f"s{i}")
    assert sim.activate() == []
    sim.signal("add", "s5")
    sim.activate()
    sim.signal("add", "s6")
    sim.signal("finish")
    assert completed_value(sim.activate()) == [f"s{i}" for i in range(7)]
    machine, _ = replay(Recorder, sim.events)
    assert instance(machine).seen == [f"s{i}" for i in range(7)]


def test_dropped_close_replays_and_closes_again() -> None:
    """The completion's close was dropped because a signal arrived meanwhile: history
    has WorkflowTaskCompleted and no close event, then the signal."""
    sim = Sim(Recorder)
    sim.activate()
    sim.signal("finish")
    commands = sim.activate(drop_close=True)
    assert isinstance(commands[-1], cmd.CompleteWorkflow)
    sim.signal("add", "late")
    assert sim.events[-2].type == "WorkflowTaskCompleted"
    # A fresh machine (the worker evicts on a dropped close) replays, then decides again.
    machine, commands = replay(Recorder, sim.events)
    assert not machine.closed
    assert completed_value(commands) == ["late"]


def test_activity_failure_fails_workflow_with_cause() -> None:
    sim = Sim(Failing)
    sim.activate()
    sim.fail_activity(1, to_failure(ApplicationError("card declined", type="Declined")), 3)
    commands = sim.activate()
    assert isinstance(commands[-1], cmd.FailWorkflow)
    failure = commands[-1].failure
    assert failure["type"] == "PaymentFailed"
    assert failure["cause"]["kind"] == "activity"
    assert failure["cause"]["attempt"] == 3
    assert failure["cause"]["cause"]["type"] == "Declined"
    _, commands = replay(Failing, sim.events)
    assert commands == []


def test_non_failure_exception_fails_the_task_not_the_workflow() -> None:
    sim = Sim(Buggy)
    with pytest.raises(ActivationFailed, match="KeyError"):
        sim.activate()
