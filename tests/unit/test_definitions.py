"""Decorators validate eagerly and attach frozen definitions; RetryPolicy validates and
has the wire form the engine's Lua reads."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from engine.errors import InvalidArgumentError
from engine.machine import ActivationFailed
from sdk import RetryPolicy, activity, workflow
from sdk._definitions import (
    activity_definition,
    activity_type_name,
    query_name,
    signal_name,
    workflow_definition,
    workflow_type_name,
)
from tests.unit.sim import Sim


@workflow.defn(name="Renamed")
class Good:
    @workflow.signal(name="pickedUp")
    def picked_up(self) -> None: ...

    @workflow.signal
    async def delivered(self, at: str) -> None: ...

    @workflow.query(name="getStatus")
    def get_status(self) -> str:
        return "ok"

    @workflow.run
    async def run(self) -> None: ...


@activity.defn(name="chargeCustomer")
async def charge(x: int) -> int:
    return x


def test_definition_and_wire_names() -> None:
    definition = workflow_definition(Good)
    assert definition is workflow_definition(Good.run)
    assert definition.name == "Renamed"
    assert sorted(definition.signals) == ["delivered", "pickedUp"]
    assert sorted(definition.queries) == ["getStatus"]
    assert workflow_type_name(Good) == workflow_type_name(Good.run) == "Renamed"
    assert workflow_type_name("Other") == "Other"
    assert signal_name(Good.picked_up) == "pickedUp"
    assert signal_name("x") == "x"
    assert query_name(Good.get_status) == "getStatus"
    assert activity_type_name(charge) == "chargeCustomer"
    assert activity_type_name("refund") == "refund"
    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.name = "x"  # type: ignore[misc]


def test_not_a_workflow_or_activity() -> None:
    with pytest.raises(TypeError, match=re.escape("not a @workflow.defn")):
        workflow_type_name(charge)
    with pytest.raises(TypeError, match=re.escape("not an @activity.defn")):
        activity_type_name(Good)
    with pytest.raises(TypeError, match=re.escape("not a @workflow.signal")):
        signal_name(Good.get_status)
    with pytest.raises(TypeError, match=re.escape("not a @workflow.query")):
        query_name(Good.picked_up)
    with pytest.raises(InvalidArgumentError):
        workflow_type_name("has space")


def test_run_must_be_async() -> None:
    with pytest.raises(TypeError, match="must be 'async def'"):

        class Bad:
            @workflow.run
            def run(self) -> None: ...


def test_workflow_needs_one_run() -> None:
    with pytest.raises(TypeError, match=re.escape("no @workflow.run")):

        @workflow.defn
        class NoRun:
            pass

    with pytest.raises(TypeError, match=re.escape("two @workflow.run")):

        @workflow.defn
        class TwoRuns:
            @workflow.run
            async def a(self) -> None: ...

            @workflow.run
            async def b(self) -> None: ...


def test_duplicate_handler_names() -> None:
    with pytest.raises(TypeError, match="two signal handlers named 'go'"):

        @workflow.defn
        class Signals:
            @workflow.signal(name="go")
            def a(self) -> None: ...

            @workflow.signal(name="go")
            def b(self) -> None: ...

            @workflow.run
            async def run(self) -> None: ...

    with pytest.raises(TypeError, match="two query handlers named 'q'"):

        @workflow.defn
        class Queries:
            @workflow.query(name="q")
            def a(self) -> None: ...

            @workflow.query(name="q")
            def b(self) -> None: ...

            @workflow.run
            async def run(self) -> None: ...


def test_lambdas_and_async_queries_are_refused() -> None:
    with pytest.raises(TypeError, match="not a lambda"):
        workflow.signal(lambda self: None)
    with pytest.raises(TypeError, match="not a lambda"):
        workflow.query(lambda self: None)
    with pytest.raises(TypeError, match="not a lambda"):
        activity.defn(lambda: None)
    with pytest.raises(TypeError, match="must not be async"):

        class AsyncQuery:
            @workflow.query
            async def q(self) -> None: ...


def test_init_must_take_no_required_arguments() -> None:
    with pytest.raises(TypeError, match="no required arguments"):

        @workflow.defn
        class NeedsArgs:
            def __init__(self, x: int) -> None:
                self.x = x

            @workflow.run
            async def run(self) -> None: ...

    @workflow.defn
    class OptionalArgs:
        def __init__(self, x: int = 1) -> None:
            self.x = x

        @workflow.run
        async def run(self) -> None: ...


def test_sync_activities_and_methods_are_defined() -> None:
    def resize(path: str) -> str:
        return path

    class Service:
        def __init__(self, fee: int) -> None:
            self.fee = fee

        @activity.defn
        async def charge(self, amount: int) -> int:
            return amount + self.fee

    assert activity.defn(resize) is resize
    assert activity_definition(resize).is_async is False
    assert activity_definition(Service.charge).is_async is True
    # A bound method's definition calls it with its own instance.
    bound = activity_definition(Service(2).charge)
    assert bound.name == "charge"
    assert bound.fn.__self__.fee == 2  # type: ignore[attr-defined]
    assert activity_type_name(Service.charge) == activity_type_name(Service(3).charge)


def test_activity_must_be_a_plain_function() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="must not be a generator"):
        activity.defn(numbers)
    with pytest.raises(TypeError, match="decorates a function or a method"):
        activity.defn(Good)


def test_bad_wire_names() -> None:
    def handler(self: Any) -> None: ...

    with pytest.raises(InvalidArgumentError):
        workflow.signal(name="has space")(handler)
    with pytest.raises(InvalidArgumentError):

        @workflow.defn(name="")
        class Empty:
            @workflow.run
            async def run(self) -> None: ...


def test_defn_on_a_function_is_refused() -> None:
    async def not_a_class() -> None: ...

    with pytest.raises(TypeError, match="decorates a class"):
        workflow.defn(not_a_class)  # type: ignore[call-overload]


# --- RetryPolicy ----------------------------------------------------------------------


def test_retry_policy_wire_form() -> None:
    assert RetryPolicy().to_wire() == {
        "initial_interval_ms": 1000,
        "backoff_coefficient": 2.0,
        "maximum_interval_ms": 100_000,
        "maximum_attempts": 0,
        "non_retryable_error_types": [],
    }
    policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=250),
        backoff_coefficient=1.5,
        maximum_interval=timedelta(seconds=5),
        maximum_attempts=4,
        non_retryable_error_types=("Declined", "ValueError"),
    )
    assert policy.to_wire() == {
        "initial_interval_ms": 250,
        "backoff_coefficient": 1.5,
        "maximum_interval_ms": 5000,
        "maximum_attempts": 4,
        "non_retryable_error_types": ["Declined", "ValueError"],
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_interval": timedelta(0)}, "initial_interval must be positive"),
        ({"backoff_coefficient": 0.5}, "at least 1"),
        # NaN passed `< 1`, and either went to the server as JSON cjson cannot encode
        # again (the completion that scheduled the activity was refused).
        ({"backoff_coefficient": math.nan}, "finite"),
        ({"backoff_coefficient": math.inf}, "finite"),
        (
            {"initial_interval": timedelta(seconds=2), "maximum_interval": timedelta(seconds=1)},
            "maximum_interval must be at least initial_interval",
        ),
        ({"maximum_attempts": -1}, "0 \\(unlimited\\) or more"),
    ],
)
def test_retry_policy_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        RetryPolicy(**kwargs)


def test_start_activity_needs_a_timeout() -> None:
    @workflow.defn
    class NoTimeout:
        @workflow.run
        async def run(self) -> None:
            await workflow.execute_activity("x")

    with pytest.raises(ActivationFailed) as info:
        Sim(NoTimeout).activate()
    assert "start_to_close_timeout or schedule_to_close_timeout" in str(info.value)
