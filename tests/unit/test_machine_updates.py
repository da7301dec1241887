"""The replay machine's update side (engine/updates.py), driven by plain event lists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import commands as cmd
from engine.errors import ApplicationError, NondeterminismError
from engine.machine import ActivationFailed
from engine.updates import UpdateRequest
from sdk import workflow
from tests.unit.sim import Sim, codec, instance, replay


@workflow.defn
class Account:
    def __init__(self) -> None:
        self.balance = 0
        self.closing = False

    @workflow.update
    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    @deposit.validator
    def _positive(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("a deposit must be positive")

    @workflow.update(name="slowDeposit")
    async def slow_deposit(self, amount: int) -> int:
        await workflow.sleep(5)
        self.balance += amount
        return self.balance

    @workflow.update
    async def refuse(self) -> None:
        raise ApplicationError("refused", type="Refused")

    @workflow.update
    def crash(self) -> None:
        raise KeyError("a bug")

    @workflow.update
    def sneaky(self) -> None:
        pass

    @sneaky.validator
    def _sneaky(self) -> None:
        workflow.start_activity("x", start_to_close_timeout=timedelta(seconds=5))

    @workflow.signal
    def close(self) -> None:
        self.closing = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.closing)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.balance


@workflow.defn(name="Account")
class AccountWithoutSlowDeposit:
    def __init__(self) -> None:
        self.balance = 0
        self.closing = False

    @workflow.signal
    def close(self) -> None:
        self.closing = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.closing)
        return self.balance


def request(uid: str, name: str, *args: Any) -> UpdateRequest:
    return UpdateRequest(uid, name, codec.encode(list(args)))


def started() -> Sim:
    sim = Sim(Account)
    sim.activate()
    return sim


def test_accepted_and_completed_in_one_activation_then_replayed() -> None:
    sim = started()
    commands = sim.activate(updates=[request("u1", "deposit", 5)])
    assert commands == [cmd.AcceptUpdate("u1", "deposit", codec.encode([5])),
                        cmd.CompleteUpdate("u1", codec.encode(5))]
    sim.activate(updates=[request("u2", "deposit", 3)])
    assert sim.instance.balance == 8
    machine, live = replay(Account, sim.events)
    assert live == []
    assert instance(machine).balance == 8


def test_validator_rejects_and_nothing_is_recorded() -> None:
    sim = started()
    before = list(sim.events)
    commands = sim.activate(updates=[request("bad", "deposit", -1)])
    assert len(commands) == 1
    rejected = commands[0]
    assert isinstance(rejected, cmd.RejectUpdate)
    assert "positive" in rejected.failure["message"]
    assert sim.events == before
    assert sim.instance.balance == 0


def test_unknown_update_and_misfit_arguments_are_rejected() -> None:
    sim = started()
    commands = sim.activate(updates=[request("a", "nope"), request("b", "deposit", 1, 2)])
    assert [type(c) for c in commands] == [cmd.RejectUpdate, cmd.RejectUpdate]
    first, second = commands
    assert isinstance(first, cmd.RejectUpdate) and isinstance(second, cmd.RejectUpdate)
    assert "'nope' expected but not found" in first.failure["message"]
    assert "do not fit" in second.failure["message"]


def test_a_validator_may_not_decide_anything() -> None:
    sim = started()
    commands = sim.activate(updates=[request("s", "sneaky")])
    assert len(commands) == 1
    assert isinstance(commands[0], cmd.RejectUpdate)
    assert "may not start" in commands[0].failure["message"]


def test_async_handler_completes_in_a_later_activation_and_replays() -> None:
    sim = started()
    commands = sim.activate(updates=[request("slow", "slowDeposit", 4)])
    assert [type(c) for c in commands] == [cmd.AcceptUpdate, cmd.StartTimer]
    sim.fire_timer(1)
    assert sim.activate() == [cmd.CompleteUpdate("slow", codec.encode(4))]
    machine, live = replay(Account, sim.events)
    assert live == []
    assert instance(machine).balance == 4


def test_replay_reruns_an_accepted_handler_that_has_not_completed() -> None:
    """A worker died after the acceptance: the next one replays the handler from the
    accepted event and completes it when its timer fires."""
    sim = started()
    sim.activate(updates=[request("slow", "slowDeposit", 4)])
    sim.fire_timer(1)
    machine, commands = replay(Account, sim.events)
    assert commands == [cmd.CompleteUpdate("slow", codec.encode(4))]
    assert instance(machine).balance == 4


def test_handler_failure_completes_the_update_with_it() -> None:
    sim = started()
    commands = sim.activate(updates=[request("r", "refuse")])
    assert isinstance(commands[0], cmd.AcceptUpdate)
    done = commands[1]
    assert isinstance(done, cmd.CompleteUpdate) and done.failure is not None
    assert done.failure["type"] == "Refused"


def test_a_handler_bug_fails_the_workflow_task() -> None:
    sim = started()
    with pytest.raises(ActivationFailed):
        sim.activate(updates=[request("c", "crash")])


def test_all_handlers_finished_holds_the_close_back() -> None:
    sim = started()
    sim.activate(updates=[request("slow", "slowDeposit", 2)])
    sim.signal("close")
    assert sim.activate() == []  # the handler's timer still runs
    sim.fire_timer(1)
    commands = sim.activate()
    assert commands[0] == cmd.CompleteUpdate("slow", codec.encode(2))
    assert isinstance(commands[-1], cmd.CompleteWorkflow)
    assert codec.decode(commands[-1].result) == 2
    _, live = replay(Account, sim.events)
    assert live == []


def test_replay_without_the_handler_is_nondeterministic() -> None:
    sim = started()
    sim.activate(updates=[request("u", "deposit", 1)])
    with pytest.raises(NondeterminismError, match="WorkflowExecutionUpdateAccepted"):
        replay(AccountWithoutSlowDeposit, sim.events)
