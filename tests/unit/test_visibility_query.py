"""The visibility query parser (engine/visibility_query.py), the compiler from a query to
index reads (engine/visibility.py) and the search attributes' wire form: pure, no Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.errors import InvalidArgumentError
from engine.keys import Keys
from engine.search_attributes import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    from_wire,
    merged,
    plain,
    to_wire,
)
from engine.visibility_plan import AnyOf, Compiler, Members, Range, Row, Step, Types
from engine.visibility_query import (
    And,
    Between,
    Comparison,
    In,
    InvalidQueryError,
    Or,
    Query,
    StartsWith,
    parse,
    tokenize,
)

T = SearchAttributeIndexedValueType


def test_tokens_carry_their_positions() -> None:
    tokens = tokenize("Amount >= -1.5 AND Name = 'it''s'")
    assert [(t.kind, t.value, t.position) for t in tokens] == [
        ("ident", "Amount", 0), ("op", ">=", 7), ("number", -1.5, 10),
        ("keyword", "AND", 15), ("ident", "Name", 19), ("op", "=", 24),
        ("string", "it's", 26), ("end", "", 33)]


def test_precedence_and_parentheses() -> None:
    query = parse("A = 1 OR B = 2 AND (C = 'x' OR D != true)")
    assert query == Query(Or((
        Comparison("A", "=", 1, 0),
        And((Comparison("B", "=", 2, 9),
             Or((Comparison("C", "=", "x", 20), Comparison("D", "!=", True, 31))))),
    )))


def test_every_operator() -> None:
    where = parse(
        "a BETWEEN 1 AND 2 and b not between 'x' and 'y' and c in (1, 2) and d NOT IN ('q') "
        "and e starts_with 'p' and f <> 3 and g <= 4 ORDER BY StartTime asc").where
    assert isinstance(where, And)
    assert where.parts[:5] == (
        Between("a", 1, 2, False, 0), Between("b", "x", "y", True, 22),
        In("c", (1, 2), False, 52), In("d", ("q",), True, 68),
        StartsWith("e", "p", 87))
    assert where.parts[5] == Comparison("f", "!=", 3, 109)


def test_order_by() -> None:
    assert parse("") == Query(None, "StartTime", True)
    assert parse("ORDER BY CloseTime ASC") == Query(None, "CloseTime", False)
    assert parse("`Odd Name` = 1").where == Comparison("Odd Name", "=", 1, 0)


@pytest.mark.parametrize(("query", "position", "message"), [
    ("A =", 3, "expected a value, found the end"),
    ("A = 1 AND", 9, "expected a search attribute name"),
    ("A = 1 B = 2", 6, "unexpected 'B'"),
    ("(A = 1", 6, "expected ')'"),
    ("A IN 1", 5, "expected '(' after IN"),
    ("A IN (1 2)", 8, "expected ',' or ')'"),
    ("A BETWEEN 1 OR 2", 12, "expected AND"),
    ("A NOT = 1", 6, "expected BETWEEN or IN"),
    ("A STARTS_WITH 1", 14, "STARTS_WITH takes a string"),
    ("A ~ 1", 2, "unexpected character '~'"),
    ("A = 'open", 4, "string not closed"),
    ("A", 1, "expected an operator"),
    ("= 1", 0, "expected a search attribute name"),
    ("A = 1 ORDER BY Amount", 15, "ORDER BY takes StartTime or CloseTime"),
])
def test_bad_queries_name_the_position(query: str, position: int, message: str) -> None:
    with pytest.raises(InvalidQueryError) as raised:
        parse(query)
    assert raised.value.position == position
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"invalid query at position {position}: ")
    assert isinstance(raised.value, InvalidArgumentError)


def plan(query: str, types: Types | None = None) -> object:
    return Compiler(Keys(), 3, types or {}).plan(parse(query).where)


def test_indexed_leaves_compile_to_index_reads() -> None:
    k = Keys()
    assert plan("WorkflowType = 'Order'") == Step((Range(k.index_type(3, "Order")),))
    assert plan("WorkflowId IN ('a', 'b')") == Step((Members(k.index_start(3), ("a", "b")),))
    assert plan("StartTime BETWEEN '2025-01-01' AND '2025-01-02T00:00:00+00:00'") == Step(
        (Range(k.index_start(3), "1735689600000", "1735776000000"),))
    amount = k.sa_values(3, "Amount", "INT")
    types: Types = {"Amount": {T.INT}, "Customer": {T.KEYWORD, T.KEYWORD_LIST}}
    assert plan("Amount > 5", types) == Step((Range(amount, "(5", "+inf"),))
    assert plan("Amount != 5", types) == Step(
        (Range(amount, "-inf", "(5"), Range(amount, "(5", "+inf")))
    assert plan("Customer = 'c-1'", types) == AnyOf((
        Step((Range(k.sa_value(3, "Customer", "KEYWORD", "c-1")),)),
        Step((Range(k.sa_value(3, "Customer", "KEYWORD_LIST", "c-1")),))))


def test_status_not_equal_is_the_other_status_indexes() -> None:
    step = plan("ExecutionStatus != 'Running'")
    assert isinstance(step, Step) and step.include is not None
    assert {r.key.rsplit(":", 1)[1] for r in step.include} == {
        "COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW"}
    assert plan("ExecutionStatus = 'ContinuedAsNew'") == Step(
        (Range(Keys().index_status(3, "CONTINUED_AS_NEW")),))


def test_filtered_leaves_say_what_they_read() -> None:
    k = Keys()
    types: Types = {"Note": {T.TEXT}, "Customer": {T.KEYWORD}}
    text = plan("Note = 'big order'", types)
    assert isinstance(text, Step) and text.predicate is not None
    assert text.include == (Range(k.sa_values(3, "Note", "TEXT")),)
    assert text.predicate(Row("x", attributes={"Note": ["TEXT", "A BIG, big order!"]}))
    assert not text.predicate(Row("x", attributes={"Note": ["TEXT", "big"]}))
    prefix = plan("Customer STARTS_WITH 'c-'", types)
    assert isinstance(prefix, Step) and prefix.predicate is not None
    assert prefix.predicate(Row("x", attributes={"Customer": ["KEYWORD", "c-9"]}))
    by_id = plan("WorkflowId STARTS_WITH 'order-'")
    assert isinstance(by_id, Step) and by_id.include is None and not by_id.needs_state


@pytest.mark.parametrize(("query", "message"), [
    ("Amount = 'x'", "'Amount' is INT: = 'x' does not apply"),
    ("Amount STARTS_WITH 'x'", "does not apply"),
    ("Note > 'a'", "does not apply"),
    ("Flag > true", "does not apply"),
    ("StartTime > 5", "StartTime takes a datetime"),
    ("WorkflowId = 5", "WorkflowId takes strings"),
    ("ExecutionStatus > 'Running'", "ExecutionStatus takes =, !=, IN and NOT IN"),
    ("TaskQueue = 'q'", "TaskQueue cannot be queried"),
])
def test_type_errors(query: str, message: str) -> None:
    types: Types = {"Amount": {T.INT}, "Note": {T.TEXT}, "Flag": {T.BOOL}}
    with pytest.raises(InvalidQueryError, match=message):
        plan(query, types)


def test_an_attribute_no_run_has_set_matches_nothing() -> None:
    assert plan("Nobody = 'x'") == Step(())


def test_wire_form_of_each_type() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    wire = to_wire({"K": "v", "I": 2**62, "D": 1.5, "B": False, "T": when, "L": ["a", "a", "b"],
                    "Legacy": [7]})
    assert wire == {"K": ["KEYWORD", "v"], "I": ["INT", str(2**62)], "D": ["DOUBLE", "1.5"],
                    "B": ["BOOL", "false"], "T": ["DATETIME", "1735787045006"],
                    "L": ["KEYWORD_LIST", ["a", "b"]], "Legacy": ["INT", "7"]}
    typed = from_wire(wire)
    assert typed[SearchAttributeKey.for_datetime("T")] == when
    assert plain(typed)["I"] == 2**62
    text = SearchAttributeKey.for_text("Note")
    assert to_wire(TypedSearchAttributes([SearchAttributePair(text, "hi there")])) == {
        "Note": ["TEXT", "hi there"]}
    update = to_wire([text.value_unset(), SearchAttributeKey.for_bool("B").value_set(True)],
                     upsert=True)
    assert update == {"Note": None, "B": ["BOOL", "true"]}
    assert merged({"Note": ["TEXT", "x"], "K": ["KEYWORD", "v"]}, update) == {
        "K": ["KEYWORD", "v"], "B": ["BOOL", "true"]}
    assert to_wire({"Gone": None, "Empty": []}, upsert=True) == {"Gone": None, "Empty": None}


@pytest.mark.parametrize("bad", [
    {"1x": "v"}, {"StartTime": "v"}, {"K": object()}, {"K": None}, {"K": "a\nb"},
    {"K": float("inf")}, {f"K{i}": i for i in range(101)},
])
def test_bad_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        to_wire(bad)
    with pytest.raises(InvalidArgumentError):
        to_wire([SearchAttributePair(SearchAttributeKey.for_int("I"), True)])
