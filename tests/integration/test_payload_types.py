"""Payloads follow type hints end to end (on fakeredis and a real server): dataclasses,
enums and datetimes through a workflow's arguments, an activity's arguments and result,
a signal, a query and the workflow's result; values that do not fit are a PayloadError
naming the parameter, at the caller where it can tell, else on the worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import IntEnum
from typing import Any
from uuid import UUID

import anyio
import msgpack
import pytest

from sdk import (
    ActivityError,
    ApplicationError,
    Client,
    PayloadError,
    QueryFailedError,
    WorkflowFailureError,
    activity,
    workflow,
)
from sdk.testing import running_worker
from tests.integration.helpers import eventually

pytestmark = pytest.mark.anyio
T = timedelta(seconds=10)


class Speed(IntEnum):
    STANDARD = 1
    EXPRESS = 2


@dataclass
class Line:
    sku: str
    quantity: int


@dataclass
class OrderInput:
    order_id: UUID
    lines: list[Line]
    speed: Speed
    placed_at: datetime
    total: Decimal


@dataclass
class Shipment:
    order_id: UUID
    speed: Speed
    ship_by: datetime
    parcels: int


@dataclass
class Status:
    state: str
    shipment: Shipment | None = None
    notes: list[str] = field(default_factory=list)


#: What the activity saw, to check its arguments arrived typed.
SEEN: list[Any] = []


@activity.defn
async def ship(order: OrderInput, speed: Speed, when: datetime) -> Shipment:
    SEEN.append((order, speed, when))
    return Shipment(order.order_id, speed, when + timedelta(days=1),
                    sum(line.quantity for line in order.lines))


@activity.defn
async def count_lines(lines: list[Line]) -> int:
    return len(lines)


@workflow.defn
class Fulfil:
    def __init__(self) -> None:
        self.status = Status("received")
        self.picked: list[Line] = []

    @workflow.signal
    def pick(self, line: Line) -> None:
        assert isinstance(line, Line)  # typed, not a dict
        self.picked.append(line)
        self.status.notes.append(f"picked {line.sku}")

    @workflow.query
    def get_status(self) -> Status:
        return self.status

    @workflow.query
    def wrong_status(self) -> Status:
        return {"state": self.status.state}  # type: ignore[return-value]

    @workflow.run
    async def run(self, order: OrderInput) -> Status:
        assert isinstance(order, OrderInput) and isinstance(order.lines[0], Line)
        await workflow.wait_condition(lambda: len(self.picked) == len(order.lines))
        shipment = await workflow.execute_activity(
            ship, order, order.speed, order.placed_at, start_to_close_timeout=T)
        assert isinstance(shipment, Shipment) and type(shipment.speed) is Speed
        # Named by its wire name: `result_type` says what the result converts to.
        lines = await workflow.execute_activity(
            "count_lines", [{"sku": "x", "quantity": 1}], start_to_close_timeout=T,
            result_type=int)
        self.status = Status("shipped", shipment, [*self.status.notes, f"{lines} line"])
        return self.status


@workflow.defn
class Echo:
    """Takes an OrderInput; started by name with raw maps by the tests."""

    @workflow.run
    async def run(self, order: OrderInput) -> str:
        return f"{order.speed.name} {order.lines[0].sku}"


@workflow.defn
class BadCall:
    """Calls an activity by name with an argument that does not fit its hint."""

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity("count_lines", ["not a line"],
                                            start_to_close_timeout=T)
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            return f"{err.cause.type}: {err.cause.non_retryable}: {err.cause}"
        return "no error"


@workflow.defn
class WrongResult:
    @workflow.run
    async def run(self) -> Shipment:
        return "not a shipment"  # type: ignore[return-value]


ORDER = OrderInput(
    order_id=UUID("00000000-0000-4000-8000-000000000001"),
    lines=[Line("apple", 2), Line("pear", 3)],
    speed=Speed.EXPRESS,
    placed_at=datetime(2026, 5, 17, 10, 0, tzinfo=UTC),
    total=Decimal("12.50"),
)


def _worker(client: Client) -> Any:
    return running_worker(client, task_queue="q",
                          workflows=[Fulfil, Echo, BadCall, WrongResult],
                          activities=[ship, count_lines])


async def test_dataclasses_enums_and_datetimes_arrive_as_their_types(client: Client) -> None:
    SEEN.clear()
    async with _worker(client):
        handle = await client.start_workflow(Fulfil.run, ORDER, id="fulfil-1", task_queue="q")
        await handle.signal(Fulfil.pick, Line("apple", 2))
        await eventually(lambda: _picked(handle, 1))
        status = await handle.query(Fulfil.get_status)
        assert status == Status("received", None, ["picked apple"])
        await handle.signal(Fulfil.pick, Line("pear", 3))
        with anyio.fail_after(10):
            result = await handle.result()
        assert isinstance(result, Status)
        assert result.shipment == Shipment(ORDER.order_id, Speed.EXPRESS,
                                           ORDER.placed_at + timedelta(days=1), 5)
        assert type(result.shipment.speed) is Speed
        assert result.notes == ["picked apple", "picked pear", "1 line"]
        # The activity got the dataclass, the IntEnum (not a plain int) and the datetime.
        order, speed, when = SEEN[0]
        assert order == ORDER and type(speed) is Speed and when == ORDER.placed_at
        # Completed runs are queried by replay: the same typed answer.
        assert (await handle.query(Fulfil.get_status)) == result
        # The stored result is a readable map (what redis-cli and other languages see).
        stored = await client.store.get_fields(handle.id, "result")
        plain = msgpack.unpackb(stored[0], raw=False)
        assert plain["shipment"]["speed"] == 2
        assert plain["shipment"]["ship_by"] == "2026-05-18T10:00:00+00:00"
        # Without a hint (a handle by id alone) the value comes as it is stored...
        by_id = client.get_workflow_handle("fulfil-1")
        assert (await by_id.result())["state"] == "shipped"
        # ...and with `result_type` or the workflow's class, typed again.
        assert await client.get_workflow_handle("fulfil-1", result_type=Status).result() == result
        assert await client.get_workflow_handle_for(Fulfil.run, "fulfil-1").result() == result
        assert await by_id.query("get_status", result_type=Status) == result


async def _picked(handle: Any, n: int) -> bool:
    status = await handle.query("get_status")
    return len(status["notes"]) >= n


async def test_a_wrong_type_fails_at_the_call_naming_the_parameter(client: Client) -> None:
    with pytest.raises(PayloadError, match=r"parameter 'order' of Fulfil\.run: expected "
                                           r"OrderInput, got dict"):
        await client.start_workflow(Fulfil.run, {"order_id": "x"}, id="bad-1", task_queue="q")
    with pytest.raises(PayloadError, match=r"parameter 'order' of Fulfil\.run, at "
                                           r"\.lines\[1\]\.quantity: expected int, got str"):
        await client.start_workflow(
            Fulfil.run, OrderInput(ORDER.order_id, [Line("a", 1), Line("b", "2")],  # type: ignore[arg-type]
                                   Speed.STANDARD, ORDER.placed_at, Decimal(1)),
            id="bad-1", task_queue="q")
    # Nothing was started.
    assert [w async for w in client.list_workflows()] == []
    async with _worker(client):
        handle = await client.start_workflow(Fulfil.run, ORDER, id="bad-2", task_queue="q")
        with pytest.raises(PayloadError, match=r"parameter 'line' of Fulfil\.pick: expected "
                                               r"Line, got str"):
            await handle.signal(Fulfil.pick, "apple")
        await handle.terminate()


async def test_maps_from_an_untyped_sender_are_converted_on_the_worker(client: Client) -> None:
    """Started by name with plain maps (as the CLI or another language would): the worker
    converts them to the run method's hints."""
    raw = {"order_id": str(ORDER.order_id), "lines": [{"sku": "fig", "quantity": 1}],
           "speed": 2, "placed_at": "2026-05-17T10:00:00+00:00", "total": "1.5"}
    async with _worker(client):
        assert await client.execute_workflow("Echo", raw, id="echo-1",
                                             task_queue="q") == "EXPRESS fig"


async def test_a_wrong_typed_argument_fails_the_workflow_task_naming_it(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow("Echo", {"order_id": "x"}, id="echo-bad",
                                             task_queue="q")

        async def failed() -> bool:
            return (await handle.describe()).last_workflow_task_failure is not None

        await eventually(failed)
        failure = (await handle.describe()).last_workflow_task_failure
        assert failure is not None
        assert failure["type"] == "PayloadError"
        assert "parameter 'order' of Echo.run" in failure["message"]
        await handle.terminate()


async def test_a_wrong_typed_activity_argument_fails_it_for_good(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(BadCall.run, id="bad-call", task_queue="q")
    assert result.startswith("PayloadError: True: parameter 'lines' of count_lines, at [0]: "
                             "expected Line (a map of its fields), got str")


async def test_a_signal_that_does_not_fit_is_dropped_naming_the_parameter(
    client: Client,
) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Fulfil.run, ORDER, id="drop-1", task_queue="q")
        await handle.signal("pick", {"sku": "apple"})  # no quantity

        async def dropped() -> bool:
            return (await handle.describe()).last_signal_dropped is not None

        await eventually(dropped)
        note = (await handle.describe()).last_signal_dropped or ""
        assert "parameter 'line' of Fulfil.pick: Line is missing its required field " \
               "'quantity'" in note
        await handle.terminate()


async def test_a_query_result_that_does_not_fit_its_hint_is_an_error_to_the_caller(
    client: Client,
) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Fulfil.run, ORDER, id="query-bad", task_queue="q")
        with pytest.raises(QueryFailedError, match=r"result of Fulfil\.wrong_status: expected "
                                                   r"Status, got dict"):
            await handle.query(Fulfil.wrong_status)
        # An answer that does not fit the caller's result_type is the caller's error.
        with pytest.raises(PayloadError, match=r"result of get_status: Line is missing its "
                                               r"required field 'sku'"):
            await handle.query("get_status", result_type=Line)
        await handle.terminate()


async def test_a_result_that_does_not_fit_its_hint_fails_the_workflow(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(WrongResult.run, id="wrong-result", task_queue="q")
        with anyio.fail_after(10), pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.type == "PayloadError"
    assert "result of WrongResult.run: expected Shipment, got str" in str(info.value.cause)
