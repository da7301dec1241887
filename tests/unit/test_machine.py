"""The replay machine driven by plain event lists: no Redis, no clock."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
import structlog

from engine import commands as cmd
from engine import events as ev
from engine.errors import ActivityError, ApplicationError, NondeterminismError, to_failure
from engine.machine import LOGIC_FLAGS, ActivationFailed
from sdk import workflow
from tests.unit.sim import Sim, codec, instance, replay

T = timedelta(seconds=10)


def scheduled(commands: list[cmd.Command]) -> list[tuple[int, str]]:
    return [(c.seq, c.activity_type) for c in commands if isinstance(c, cmd.ScheduleActivity)]


def completed_value(commands: list[cmd.Command]) -> Any:
    assert isinstance(commands[-1], cmd.CompleteWorkflow), commands
    return codec.decode(commands[-1].result)


# --- workflows under test ---------------------------------------------------------------


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.stage = "new"

    @workflow.query
    def stage_now(self) -> str:
        return self.stage

    @workflow.run
    async def run(self, name: str) -> str:
        self.stage = "greeting"
        greeting: str = await workflow.execute_activity("greet", name, start_to_close_timeout=T)
        self.stage = "sleeping"
        await workflow.sleep(5)
        self.stage = "done"
        return greeting + "!"


@workflow.defn
class Gatherer:
    @workflow.run
    async def run(self) -> list[Any]:
        results = await asyncio.gather(
            workflow.execute_activity("a", 1, start_to_close_timeout=T),
            workflow.execute_activity("b", 2, start_to_close_timeout=T),
            workflow.sleep(1),
        )
        return list(results)


@workflow.defn
class Waiter:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> str:
        if await workflow.wait_condition(lambda: self.go, timeout=timedelta(seconds=30)):
            await workflow.execute_activity("after_signal", start_to_close_timeout=T)
            return "signalled"
        return "timed out"


@workflow.defn
class Cancellable:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity("long", start_to_close_timeout=T)
        except ActivityError:
            await workflow.execute_activity("cleanup", start_to_close_timeout=T)
            raise
        return "finished"


@workflow.defn
class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.done = False

    @workflow.signal
    def add(self, item: str) -> None:
        self.seen.append(item)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return self.seen


@workflow.defn
class Randomness:
    def __init__(self) -> None:
        self.values: list[Any] = []

    @workflow.run
    async def run(self) -> list[Any]:
        self.values.append(workflow.now().isoformat())
        self.values.append(workflow.random().random())
        self.values.append(str(workflow.uuid4()))
        await workflow.sleep(1)
        self.values.append(workflow.now().isoformat())
        self.values.append(workflow.random().randint(0, 10**9))
        self.values.append(str(workflow.uuid4()))
        return self.values


@workflow.defn
class Looper:
    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.sleep(1)
        if n < 3:
            workflow.continue_as_new(n + 1)
        return n


@workflow.defn
class Failing:
    @workflow.run
    async def run(self) -> None:
        try:
            await workflow.execute_activity("charge", start_to_close_timeout=T)
        except ActivityError as exc:
            raise ApplicationError("payment failed", type="PaymentFailed") from exc


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self) -> None:
        raise KeyError("oops")


@workflow.defn
class Logging:
    @workflow.run
    async def run(self) -> None:
        workflow.logger.info("before")
        await workflow.sleep(1)
        workflow.logger.info("after")


# Versions of one workflow type, for non-determinism: v1 is what history records.
@workflow.defn(name="Versioned")
class VersionedV1:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity("one", start_to_close_timeout=T)
        await workflow.sleep(1)


@workflow.defn(name="Versioned")
class VersionedOtherActivity:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity("two", start_to_close_timeout=T)
        await workflow.sleep(1)


@workflow.defn(name="Versioned")
class VersionedExtraCommand:
    @workflow.run
    async def run(self) -> None:
        await asyncio.gather(
            workflow.execute_activity("one", start_to_close_timeout=T),
            workflow.execute_activity("one", start_to_close_timeout=T),
        )
        await workflow.sleep(1)


@workflow.defn(name="Versioned")
class VersionedMissingCommand:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity("one", start_to_close_timeout=T)
        await workflow.wait_condition(lambda: False)  # the sleep is gone


@workflow.defn(name="Versioned")
class VersionedTimerFirst:
    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(1)
        await workflow.execute_activity("one", start_to_close_timeout=T)


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


# --- deterministic helpers ----------------------------------------------------------------


def test_now_random_uuid_identical_on_replay() -> None:
    sim = Sim(Randomness, run_id="run-xyz")
    sim.activate()
    sim.fire_timer(1)
    live = completed_value(sim.activate())
    assert live[0] != live[3]  # time moved between activations
    assert live[0].endswith("+00:00")
    machine, _ = replay(Randomness, sim.events, run_id="run-xyz")
    assert instance(machine).values == live
    # Another run id: other random numbers.
    other = Sim(Randomness, run_id="run-other")
    other.activate()
    assert instance(other.machine).values[1] != live[1]


def test_continue_as_new_command() -> None:
    sim = Sim(Looper, 1)
    sim.activate()
    sim.fire_timer(1)
    commands = sim.activate()
    assert len(commands) == 1
    assert isinstance(commands[0], cmd.ContinueAsNew)
    assert codec.decode(commands[0].input) == [2]
    assert len(commands[0].new_run_id) == 32
    assert sim.events[-1].type == "WorkflowExecutionContinuedAsNew"
    # The new run id is deterministic: replay issues the same command.
    machine, again = replay(Looper, sim.events)
    assert again == []
    assert machine.closed
    last = Sim(Looper, 3)
    last.activate()
    last.fire_timer(1)
    assert completed_value(last.activate()) == 3


def test_logger_silent_on_replay() -> None:
    with structlog.testing.capture_logs() as logs:
        sim = Sim(Logging)
        sim.activate()
        sim.fire_timer(1)
        sim.activate()
        assert [e["event"] for e in logs] == ["before", "after"]
        assert logs[0]["workflow_id"] == "wf-1"
        replay(Logging, sim.events)
        assert [e["event"] for e in logs] == ["before", "after"]


def test_workflow_calls_outside_workflow_raise() -> None:
    with pytest.raises(RuntimeError, match="not in workflow code"):
        workflow.now()
    with pytest.raises(RuntimeError, match="not in workflow code"):
        workflow.info()


@workflow.defn
class Strict:
    def __init__(self) -> None:
        self.done = False

    @workflow.signal
    def refuse(self) -> None:
        raise ApplicationError("no thanks", type="Refused")

    @workflow.signal
    def broken(self) -> None:
        raise KeyError("bug")

    @workflow.signal
    async def refuse_later(self) -> None:
        await workflow.sleep(1)
        raise ApplicationError("no thanks, later", type="Refused")

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)


@pytest.mark.parametrize("signal", ["refuse", "refuse_later"])
def test_signal_handler_failure_error_fails_workflow(signal: str) -> None:
    """Sync or async, a handler's FailureError fails the workflow (it used to fail only
    the task, over and over, when the handler was sync)."""
    sim = Sim(Strict)
    sim.activate()
    sim.signal(signal)
    commands = sim.activate()
    if signal == "refuse_later":
        assert commands == [cmd.StartTimer(1, 1000)]
        sim.fire_timer(1)
        commands = sim.activate()
    assert isinstance(commands[-1], cmd.FailWorkflow)
    assert commands[-1].failure["type"] == "Refused"
    _, commands = replay(Strict, sim.events)
    assert commands == []


def test_signal_handler_bug_fails_the_task_naming_the_handler() -> None:
    sim = Sim(Strict)
    sim.activate()
    sim.signal("broken")
    with pytest.raises(ActivationFailed, match="signal handler broken raised") as info:
        sim.activate()
    assert isinstance(info.value.__cause__, KeyError)


@workflow.defn
class AsyncioPrimitives:
    """asyncio.timeout, Event and Queue on the deterministic loop."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    @workflow.signal
    def ring(self) -> None:
        self.event.set()

    @workflow.signal
    def put(self, item: str) -> None:
        self.queue.put_nowait(item)

    @workflow.run
    async def run(self) -> list[Any]:
        out: list[Any] = []
        try:
            async with asyncio.timeout(5):
                await self.event.wait()
            out.append("rang")
        except TimeoutError:
            out.append("no ring")
        try:
            async with asyncio.timeout(2):
                out.append(await self.queue.get())
                out.append(await self.queue.get())
        except TimeoutError:
            out.append("queue timed out")
        return out


def test_asyncio_timeout_event_and_queue() -> None:
    sim = Sim(AsyncioPrimitives)
    assert sim.activate() == [cmd.StartTimer(1, 5000)]
    sim.signal("ring")
    assert sim.activate() == [cmd.CancelTimer(1), cmd.StartTimer(2, 2000)]
    sim.signal("put", "a")
    assert sim.activate() == []
    sim.fire_timer(2)
    assert completed_value(sim.activate()) == ["rang", "a", "queue timed out"]
    machine, commands = replay(AsyncioPrimitives, sim.events)
    assert commands == []
    assert machine.closed


def test_time_never_goes_back_and_replays_as_seen() -> None:
    sim = Sim(Randomness)
    sim.activate()
    first = sim.machine.now_ms
    sim.fire_timer(1)
    sim.now_ms = first - 60_000  # the server's clock stepped back a minute
    values = completed_value(sim.activate())
    assert values[0] == values[3]  # workflow.now() did not go back
    machine, _ = replay(Randomness, sim.events)
    assert instance(machine).values == values


@workflow.defn
class Peeky:
    @workflow.query
    def peek(self) -> str:
        return str(workflow.uuid4()) + str(workflow.random().random())

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(1)
        return str(workflow.uuid4())


def test_queries_do_not_move_the_random_source() -> None:
    """A query runs on the cached machine between activations: if its handler draws
    random numbers, the next activation must still draw what a replay draws."""
    quiet = Sim(Peeky)
    quiet.activate()
    quiet.fire_timer(1)
    expected = completed_value(quiet.activate())

    queried = Sim(Peeky)
    queried.activate()
    first = queried.machine.query("peek", [])
    assert queried.machine.query("peek", []) == first  # and queries agree with each other
    queried.fire_timer(1)
    assert completed_value(queried.activate()) == expected


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
