"""The workflows the replay machine's tests (tests/unit/test_machine*.py) drive, and
the helpers that read the commands it gives."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from engine import commands as cmd
from engine.errors import ActivityError, ApplicationError
from sdk import workflow
from tests.unit.sim import codec

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
