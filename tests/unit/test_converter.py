"""The data converter (sdk/converter.py) and the hints of handlers (sdk/_payload_hints.py):
every supported type through the real codec and back, the readable wire forms, and
values that do not fit their hints (PayloadError naming the parameter and the place)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from typing import Annotated, Any, Literal, NamedTuple, NewType, TypedDict
from uuid import UUID

import msgpack
import pydantic
import pytest

from engine.codec import MsgpackCodec
from engine.errors import PayloadError
from sdk import Client, Worker, activity, workflow
from sdk._payload_hints import hints_of, untyped, with_result
from sdk.converter import value_to_type, value_to_wire

codec = MsgpackCodec()


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Size(Enum):
    SMALL = "s"
    LARGE = "l"


@dataclass
class Item:
    sku: str
    quantity: int = 1


@dataclass
class Address:
    street: str
    city: str


@dataclass
class Order:
    id: UUID
    items: list[Item]
    priority: Priority
    placed_at: datetime
    deliver_on: date
    total: Decimal
    address: Address | None = None
    notes: dict[str, Item] = field(default_factory=dict)
    signature: bytes = b""


@dataclass(frozen=True)
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError("must be positive")


class Customer(pydantic.BaseModel):
    name: str
    since: datetime
    tier: Priority = Priority.LOW
    tags: list[str] = []


class Point(NamedTuple):
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


UserId = NewType("UserId", int)

ORDER = Order(
    id=UUID("12345678-1234-5678-1234-567812345678"),
    items=[Item("apple", 3), Item("pear")],
    priority=Priority.HIGH,
    placed_at=datetime(2026, 5, 17, 10, 0, tzinfo=UTC),
    deliver_on=date(2026, 5, 18),
    total=Decimal("12.50"),
    address=Address("1 Main St", "Springfield"),
    notes={"gift": Item("card")},
    signature=b"\x00\xff",
)


def through_the_wire(value: Any, hint: Any) -> Any:
    """What a receiver gets: converted, encoded and decoded by the codec, converted back."""
    wire = codec.decode(codec.encode(value_to_wire(value, hint)))
    return value_to_type(hint, wire)


@pytest.mark.parametrize(
    ("hint", "value"),
    [
        (Order, ORDER),
        (Item, Item("x")),
        (Priority, Priority.HIGH),
        (Colour, Colour.BLUE),
        (Size, Size.LARGE),
        (datetime, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))),
        (datetime, datetime(2026, 1, 2, 3, 4, 5)),  # naive stays naive
        (date, date(2026, 2, 28)),
        (UUID, UUID("12345678-1234-5678-1234-567812345678")),
        (Decimal, Decimal("0.1")),
        (bytes, b"\x00\x01\xfe"),
        (Item | None, None),
        (Item | None, Item("y", 2)),
        (list[Item], [Item("a"), Item("b", 5)]),
        (dict[str, Item], {"a": Item("a")}),
        (dict[Priority, list[Item]], {Priority.LOW: [Item("z")]}),
        (dict[UUID, date], {UUID(int=1): date(2026, 1, 1)}),
        (tuple[int, str], (1, "a")),
        (tuple[Item, ...], (Item("a"), Item("b"))),
        (set[Priority], {Priority.LOW, Priority.HIGH}),
        (frozenset[str], frozenset({"a"})),
        (Sequence[Item], [Item("s")]),
        (Mapping[str, int], {"a": 1}),
        (Point, Point(1, 2)),
        (Movie, {"title": "Heat", "year": 1995}),
        (Literal["a", "b"], "b"),
        (UserId, UserId(7)),
        (Annotated[Item, "meta"], Item("ann")),
        (int | str, "text"),
        (float, 2.5),
        (Positive, Positive(3)),
        (Customer, Customer(name="Ada", since=datetime(2020, 1, 1, tzinfo=UTC),
                            tier=Priority.HIGH, tags=["vip"])),
        (list[Customer], [Customer(name="Bo", since=datetime(2021, 1, 1, tzinfo=UTC))]),
        (Any, {"plain": [1, "two", None, True, 2.5, b"x"]}),
    ],
    ids=lambda v: getattr(v, "__name__", None) or repr(v)[:30],
)
def test_every_supported_type_comes_back_as_itself(hint: Any, value: Any) -> None:
    back = through_the_wire(value, hint)
    assert back == value
    assert type(back) is type(value)


def test_an_int_enum_stays_the_enum_not_a_plain_int() -> None:
    back = through_the_wire([Priority.HIGH], list[Priority])
    assert back == [Priority.HIGH]
    assert type(back[0]) is Priority
    # Without a hint it is the plain value, as before.
    assert type(through_the_wire(Priority.HIGH, Any)) is int


def test_nested_dataclasses_are_rebuilt_to_the_bottom() -> None:
    back = through_the_wire(ORDER, Order)
    assert isinstance(back.items[0], Item)
    assert isinstance(back.address, Address)
    assert isinstance(back.notes["gift"], Item)
    assert back.placed_at.tzinfo is not None


def test_the_wire_form_is_a_readable_map() -> None:
    """What redis-cli and other languages see: maps of fields, text for times, ids and
    decimals, the enum's value, bin for bytes."""
    plain = msgpack.unpackb(codec.encode(value_to_wire(ORDER, Order)), raw=False)
    assert plain == {
        "id": "12345678-1234-5678-1234-567812345678",
        "items": [{"sku": "apple", "quantity": 3}, {"sku": "pear", "quantity": 1}],
        "priority": 2,
        "placed_at": "2026-05-17T10:00:00+00:00",
        "deliver_on": "2026-05-18",
        "total": "12.50",
        "address": {"street": "1 Main St", "city": "Springfield"},
        "notes": {"gift": {"sku": "card", "quantity": 1}},
        "signature": b"\x00\xff",
    }
    customer = Customer(name="Ada", since=datetime(2020, 1, 1, tzinfo=UTC))
    assert value_to_wire(customer) == {
        "name": "Ada", "since": "2020-01-01T00:00:00Z", "tier": 1, "tags": []}


def test_values_without_a_hint_are_converted_by_their_own_type() -> None:
    assert value_to_wire({"when": date(2026, 1, 1), "who": Item("a"), "ids": {UUID(int=0)}}) == {
        "when": "2026-01-01", "who": {"sku": "a", "quantity": 1},
        "ids": ["00000000-0000-0000-0000-000000000000"]}
    # And decoded as they are: no hint, no conversion.
    assert value_to_type(Any, {"sku": "a"}) == {"sku": "a"}


def test_a_map_from_another_sender_decodes_to_the_dataclass() -> None:
    """Unknown keys are ignored (a newer sender), missing defaults are filled in."""
    item = value_to_type(Item, {"sku": "a", "colour": "red"})
    assert item == Item("a", 1)


def test_msgpack_timestamps_from_other_languages_decode_as_datetime() -> None:
    wire = msgpack.unpackb(msgpack.packb(datetime(2026, 1, 1, tzinfo=UTC), datetime=True))
    assert value_to_type(datetime, wire) == datetime(2026, 1, 1, tzinfo=UTC)


def test_numbers_follow_the_hint() -> None:
    assert value_to_type(float, 3) == 3.0
    assert type(value_to_type(float, 3)) is float
    assert value_to_type(Decimal, 3) == Decimal(3)
    assert value_to_wire(5, Decimal) == "5"


@pytest.mark.parametrize(
    ("hint", "wire", "message"),
    [
        (int, "3", "expected int, got str"),
        (int, True, "expected int, got bool"),
        (int, 3.0, "expected int, got float"),
        (bool, 1, "expected bool, got int"),
        (str, b"x", "expected str, got bytes"),
        (Item, "apple", r"expected Item \(a map of its fields\), got str"),
        (Item, {"quantity": 2}, "Item is missing its required field 'sku'"),
        (Item, {"sku": "a", "quantity": "many"}, r"at \.quantity: expected int, got str"),
        (Order, {**value_to_wire(ORDER, Order), "items": [{"sku": 1}]},
         r"at \.items\[0\]\.sku: expected str, got int"),
        (dict[str, Item], {"a": {"sku": None}}, r"at \['a'\]\.sku: expected str, got NoneType"),
        (Priority, 7, "7 is not a value of Priority"),
        (datetime, "yesterday", r"expected datetime \(ISO 8601 text\)"),
        (date, 20260101, r"expected date \(ISO 8601 text\), got int"),
        (UUID, "not-a-uuid", "expected UUID"),
        (Decimal, "twelve", "expected Decimal"),
        (Literal["a", "b"], "c", "expected one of"),
        (tuple[int, int], [1], r"2 items\), got 1"),
        (Positive, {"value": -1}, "Positive.* raised ValueError: must be positive"),
        (Customer, {"name": "Ada", "since": "never"}, r"at \.since: Customer: "),
        (int | Item, "x", "expected int | .*Item, got str"),
        (Movie, {"title": "Heat"}, "missing its required key 'year'"),
        (None, 1, "expected None, got int"),
    ],
)
def test_a_value_that_does_not_fit_is_a_payload_error(hint: Any, wire: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        value_to_type(hint, wire, what="parameter 'x' of f")
    with pytest.raises(PayloadError, match=r"^parameter 'x' of f"):
        value_to_type(hint, wire, what="parameter 'x' of f")


@pytest.mark.parametrize(
    ("hint", "value", "message"),
    [
        (Item, {"sku": "a"}, "expected Item, got dict"),
        (int, "3", "expected int, got str"),
        (Priority, 2, "expected Priority, got int"),
        (date, datetime(2026, 1, 1), "got datetime"),
        (list[Item], [Item("a"), "b"], r"at \[1\]: expected Item, got str"),
        (Item, Item(sku=3), r"at \.sku: expected str, got int"),  # type: ignore[arg-type]
        (Any, object(), "type object cannot be encoded"),
        (Any, [1, {2, 3}, {"k": lambda: 0}], r"at \[2\]\['k'\]: a value of type function"),
        (Item | None, 0, "expected Item, got int"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_at_the_sender(
    hint: Any, value: Any, message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        value_to_wire(value, hint, what="parameter 'x' of f")


# --- the hints of handlers --------------------------------------------------------------


@activity.defn
async def ship(order: Order, express: bool = False, *extras: Item) -> Address:
    return Address("", "")


@workflow.defn
class Shop:
    @workflow.signal
    def add(self, item: Item) -> None: ...

    @workflow.query
    def where(self) -> Address:
        return Address("", "")

    @workflow.run
    async def run(self, order: Order, priority: Priority) -> list[Item]:
        return []


class Service:
    @activity.defn
    async def charge(self, amount: Decimal) -> Decimal:
        return amount


def test_hints_of_run_methods_handlers_and_activities() -> None:
    run = hints_of(Shop.run, method=True)
    assert run.params == (("order", Order), ("priority", Priority))
    assert run.result == list[Item]
    assert hints_of(Shop.add, method=True).params == (("item", Item),)
    assert hints_of(Shop.where, method=True).result is Address
    assert hints_of(ship).rest == ("extras", Item)
    # An activity method: named on its class (unannotated self skipped) or bound.
    assert hints_of(Service.charge).params == (("amount", Decimal),)
    assert hints_of(Service().charge).params == (("amount", Decimal),)


def test_arguments_are_checked_and_converted_naming_the_parameter() -> None:
    hints = hints_of(Shop.run, method=True)
    wire = hints.encode_args([ORDER, Priority.LOW])
    assert hints.decode_args(codec.decode(codec.encode(wire))) == [ORDER, Priority.LOW]
    with pytest.raises(PayloadError, match=r"^parameter 'priority' of Shop.run: expected "
                                           "Priority, got str"):
        hints.encode_args([ORDER, "low"])
    with pytest.raises(PayloadError, match=r"^parameter 'order' of Shop.run, at \.items\[0\]"):
        hints.decode_args([{**wire[0], "items": [5]}, 1])
    extras = hints_of(ship)
    with pytest.raises(PayloadError, match=r"parameter \*extras \(argument 4\) of ship"):
        extras.encode_args([ORDER, True, Item("a"), "b"])
    with pytest.raises(PayloadError, match=r"^result of ship: expected Address, got Item"):
        extras.encode_result(Item("a"))


def test_result_type_wins_and_untyped_names_pass_values_through() -> None:
    assert with_result(untyped("x"), Item).decode_result({"sku": "a"}) == Item("a")
    assert untyped("x").decode_args([{"sku": "a"}]) == [{"sku": "a"}]
    assert untyped("x").encode_args([Item("a")]) == [{"sku": "a", "quantity": 1}]
    with pytest.raises(PayloadError, match=r"^argument 1 of x: a value of type object"):
        untyped("x").encode_args([object()])


def test_hints_that_cannot_be_resolved_are_a_clear_error() -> None:
    namespace: dict[str, Any] = {}
    exec("async def broken(x: 'Missing') -> None: ...", namespace)
    with pytest.raises(PayloadError, match="cannot resolve the type hints of broken: name "
                                           "'Missing' is not defined"):
        hints_of(namespace["broken"])


def test_unsupported_hints_say_so() -> None:
    with pytest.raises(PayloadError, match="unsupported type hint"):
        value_to_type(typing.Callable[[], int], 1)


def test_init_false_fields_are_sent_and_not_passed_back() -> None:
    @dataclass
    class Counted:
        n: int
        doubled: int = dataclasses.field(init=False)

        def __post_init__(self) -> None:
            self.doubled = self.n * 2

    wire = value_to_wire(Counted(2))
    assert wire == {"n": 2, "doubled": 4}
    assert value_to_type(Counted, wire).doubled == 4


@pytest.mark.anyio
async def test_a_worker_refuses_handlers_whose_hints_cannot_be_resolved(
    fake_client: Client,
) -> None:
    namespace: dict[str, Any] = {"activity": activity}
    exec("@activity.defn\nasync def lost(x: 'Nowhere') -> None: ...", namespace)
    with pytest.raises(PayloadError, match="cannot resolve the type hints of lost"):
        Worker(fake_client, task_queue="q", activities=[namespace["lost"]])
    Worker(fake_client, task_queue="q", workflows=[Shop], activities=[ship])


def test_a_dataclass_whose_hints_cannot_be_resolved_is_named() -> None:
    namespace: dict[str, Any] = {"dataclass": dataclass, "__name__": __name__}
    exec("from __future__ import annotations\n"
         "@dataclass\nclass Lost:\n    x: Nowhere\n", namespace)
    with pytest.raises(PayloadError, match=r"^parameter 'p' of f: cannot resolve the type "
                                           r"hints of dataclass Lost: name 'Nowhere'"):
        value_to_type(namespace["Lost"], {"x": 1}, what="parameter 'p' of f")
