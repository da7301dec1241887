"""The workflow API inside the replay machine, on plain event lists: deterministic now,
random and uuid4, continue-as-new, the replay-silent logger, signal handler failures,
asyncio primitives, time that never goes back, queries that leave the random source."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import structlog

from engine import commands as cmd
from engine.errors import ApplicationError
from engine.machine import ActivationFailed
from sdk import workflow
from tests.unit.machine_workflows import (
    Logging,
    Looper,
    Randomness,
    completed_value,
)
from tests.unit.sim import Sim, codec, instance, replay

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


def test_random_source_is_the_run_ids_from_its_first_draw() -> None:
    """Histories recorded before the source was made lazily replay with the same draws:
    it is random.Random(run_id), whenever the code first asks for it."""
    sim = Sim(Randomness, run_id="run-xyz")
    sim.activate()
    expected = random.Random("run-xyz")
    assert instance(sim.machine).values[1] == expected.random()
    uuid_bits = expected.getrandbits(128)
    assert instance(sim.machine).values[2][-12:] == f"{uuid_bits:032x}"[-12:]


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
