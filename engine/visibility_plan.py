"""Compiling a visibility query (engine/visibility_query.py) into per-shard *plans*: index
reads (ZRANGEBYSCORE of a zset, ZMSCORE for ids), reads to take away, and a predicate for
what no index answers. Pure: no I/O (engine/visibility.py runs the plans); which
condition reads what is listed there and in docs/visibility.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.keys import Keys
from engine.search_attributes import (
    BUILT_IN_NAMES,
    NUMERIC_TYPES,
    SearchAttributeIndexedValueType,
)
from engine.status import WorkflowExecutionStatus
from engine.visibility_query import (
    And,
    Between,
    Comparison,
    In,
    InvalidQueryError,
    Leaf,
    Node,
    Or,
    StartsWith,
    Value,
)

T = SearchAttributeIndexedValueType
Types = dict[str, set[SearchAttributeIndexedValueType]]


@dataclass(frozen=True)
class Range:
    """ZRANGEBYSCORE key low high."""

    key: str
    low: str = "-inf"
    high: str = "+inf"


@dataclass(frozen=True)
class Members:
    """Which of `ids` the zset holds (ZMSCORE)."""

    key: str
    ids: tuple[str, ...]


Read = Range | Members


@dataclass(frozen=True)
class Row:
    """What a predicate sees of a run (read only when a predicate needs it)."""

    id: str
    workflow_type: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    #: Union of these reads; None: every workflow of the shard.
    include: tuple[Read, ...] | None
    exclude: tuple[Read, ...] = ()
    predicate: Callable[[Row], bool] | None = None
    #: The predicate reads the run's state (else it looks at the id only).
    needs_state: bool = False


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Plan, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Plan, ...]


Plan = Step | AllOf | AnyOf

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_datetime(value: Value) -> int | None:
    """Epoch ms of an RFC 3339 string (naive: UTC), else None."""
    if not isinstance(value, str) or not _ISO.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_status(value: Value, position: int) -> str:
    """A status as the indexes name it; Temporal's 'Running' / 'ContinuedAsNew' too."""
    if isinstance(value, str):
        name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", value).upper()
        if name in WorkflowExecutionStatus.__members__:
            return name
    raise InvalidQueryError(
        f"ExecutionStatus is one of {', '.join(WorkflowExecutionStatus)}, not {value!r}",
        position,
    )


def tokens(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _score(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _range_reads(key: str, leaf: Leaf, convert: Callable[[Value], float | int]) -> Step:
    """A leaf over a zset scored by the compared value: every operator is a read."""
    match leaf:
        case Comparison(op=op, value=value):
            s = _score(convert(value))
            reads = {
                "=": [Range(key, s, s)],
                "!=": [Range(key, "-inf", f"({s}"), Range(key, f"({s}", "+inf")],
                "<": [Range(key, "-inf", f"({s}")],
                "<=": [Range(key, "-inf", s)],
                ">": [Range(key, f"({s}", "+inf")],
                ">=": [Range(key, s, "+inf")],
            }[op]
            return Step(tuple(reads))
        case Between(low=low, high=high, negated=negated):
            lo, hi = _score(convert(low)), _score(convert(high))
            if negated:
                return Step((Range(key, "-inf", f"({lo}"), Range(key, f"({hi}", "+inf")))
            return Step((Range(key, lo, hi),))
        case In(values=values, negated=negated):
            exact = tuple(Range(key, s, s) for s in (_score(convert(v)) for v in values))
            return Step((Range(key),), exact) if negated else Step(exact)
    raise InvalidQueryError(f"STARTS_WITH does not apply to {leaf.field}", leaf.position)


def _compare(op: str, have: Any, want: Any) -> bool:
    match op:
        case "=":
            return bool(have == want)
        case "!=":
            return bool(have != want)
        case "<":
            return bool(have < want)
        case "<=":
            return bool(have <= want)
        case ">":
            return bool(have > want)
    return bool(have >= want)


def _text_test(leaf: Leaf) -> Callable[[str], bool]:
    """A predicate on one text value (an id, a type, a keyword) for any leaf."""
    match leaf:
        case Comparison(op=op, value=value):
            want = str(value)
            return lambda have: _compare(op, have, want)
        case Between(low=low, high=high, negated=negated):
            return lambda have: (str(low) <= have <= str(high)) != negated
        case In(values=values, negated=negated):
            wanted = {str(v) for v in values}
            return lambda have: (have in wanted) != negated
        case StartsWith(prefix=prefix):
            return lambda have: have.startswith(prefix)
    raise AssertionError(leaf)


def _need_string(leaf: Leaf, what: str) -> None:
    for value in _values(leaf):
        if not isinstance(value, str):
            raise InvalidQueryError(f"{what} takes strings, not {value!r}", leaf.position)


def _values(leaf: Leaf) -> list[Value]:
    match leaf:
        case Comparison(value=value):
            return [value]
        case Between(low=low, high=high):
            return [low, high]
        case In(values=values):
            return list(values)
        case StartsWith(prefix=prefix):
            return [prefix]
    raise AssertionError(leaf)


class Compiler:
    """Leaves to steps for one shard, attribute types resolved namespace-wide."""

    def __init__(self, keys: Keys, shard: int, types: Types) -> None:
        self.keys, self.shard, self.types = keys, shard, types

    def plan(self, node: Node | None) -> Plan:
        match node:
            case None:
                return Step(None)
            case And(parts=parts):
                return AllOf(tuple(self.plan(p) for p in parts))
            case Or(parts=parts):
                return AnyOf(tuple(self.plan(p) for p in parts))
        assert not isinstance(node, And | Or)
        return self.leaf(node)

    def leaf(self, leaf: Leaf) -> Plan:
        k, s = self.keys, self.shard
        match leaf.field:
            case "WorkflowId":
                return self._workflow_id(leaf)
            case "WorkflowType":
                return self._workflow_type(leaf)
            case "ExecutionStatus":
                return self._status(leaf)
            case "StartTime":
                return _range_reads(k.index_start(s), leaf, lambda v: self._time(leaf, v))
            case "CloseTime":
                return _range_reads(k.index_close(s), leaf, lambda v: self._time(leaf, v))
        return self._custom(leaf)

    def _time(self, leaf: Leaf, value: Value) -> int:
        ms = parse_datetime(value)
        if ms is None:
            raise InvalidQueryError(
                f"{leaf.field} takes a datetime like '2025-01-31T12:00:00Z', not {value!r}",
                leaf.position,
            )
        return ms

    def _workflow_id(self, leaf: Leaf) -> Step:
        _need_string(leaf, "WorkflowId")
        start = self.keys.index_start(self.shard)
        match leaf:
            case Comparison(op="=", value=value):
                return Step((Members(start, (str(value),)),))
            case In(values=values, negated=False):
                return Step((Members(start, tuple(map(str, values))),))
        test = _text_test(leaf)
        return Step(None, predicate=lambda row: test(row.id))

    def _workflow_type(self, leaf: Leaf) -> Step:
        _need_string(leaf, "WorkflowType")
        index = self.keys.index_type
        match leaf:
            case Comparison(op="=" | "!=" as op, value=value):
                one = (Range(index(self.shard, str(value))),)
                return Step(one) if op == "=" else Step(None, one)
            case In(values=values, negated=negated):
                reads = tuple(Range(index(self.shard, str(v))) for v in values)
                return Step(None, reads) if negated else Step(reads)
        test = _text_test(leaf)
        return Step(None, predicate=lambda row: test(row.workflow_type), needs_state=True)

    def _status(self, leaf: Leaf) -> Step:
        match leaf:
            case Comparison(op="=" | "!=" as op, value=value):
                chosen, negated = {parse_status(value, leaf.position)}, op == "!="
            case In(values=values, negated=negated):
                chosen = {parse_status(v, leaf.position) for v in values}
            case _:
                raise InvalidQueryError(
                    "ExecutionStatus takes =, !=, IN and NOT IN", leaf.position
                )
        if negated:
            chosen = set(WorkflowExecutionStatus.__members__) - chosen
        return Step(tuple(Range(self.keys.index_status(self.shard, s)) for s in sorted(chosen)))

    def _custom(self, leaf: Leaf) -> Plan:
        name = leaf.field
        if name in BUILT_IN_NAMES:
            raise InvalidQueryError(
                f"{name} cannot be queried here (built-ins: WorkflowId, WorkflowType, "
                "ExecutionStatus, StartTime, CloseTime)", leaf.position)
        have = self.types.get(name)
        if not have:
            # No run has set it (yet): types come with values, so there is nothing to
            # check the literal against, and a query polling for the first upsert must
            # not fail. It matches nothing (docs/visibility.md: names are case-sensitive).
            return Step(())
        fits = have & _fitting_types(leaf)
        if not fits:
            kinds = ", ".join(sorted(t.name for t in have))
            raise InvalidQueryError(
                f"search attribute {name!r} is {kinds}: {_describe_leaf(leaf)} does not "
                "apply to it", leaf.position)
        steps = [self._typed(leaf, t) for t in sorted(fits)]
        return steps[0] if len(steps) == 1 else AnyOf(tuple(steps))

    def _typed(self, leaf: Leaf, kind: SearchAttributeIndexedValueType) -> Step:
        name, s = leaf.field, self.shard
        every = self.keys.sa_values(s, name, kind.name)
        if kind in NUMERIC_TYPES:
            if kind == T.DATETIME:
                return _range_reads(every, leaf, lambda v: self._time(leaf, v))
            return _range_reads(every, leaf, lambda v: _number(leaf, v))
        want: Callable[[Any], str] = str
        if kind == T.BOOL:
            want = _bool_text

        def one(value: Value) -> Range:
            return Range(self.keys.sa_value(s, name, kind.name, want(value)))

        match leaf:
            case Comparison(op="=", value=value) if kind != T.TEXT:
                return Step((one(value),))
            case Comparison(op="!=", value=value) if kind != T.TEXT:
                return Step((Range(every),), (one(value),))
            case In(values=values, negated=negated) if kind != T.TEXT:
                reads = tuple(one(v) for v in values)
                return Step((Range(every),), reads) if negated else Step(reads)
        test = _text_match(leaf) if kind == T.TEXT else _text_test(leaf)

        def predicate(row: Row) -> bool:
            item = row.attributes.get(name)
            if not isinstance(item, list) or len(item) != 2 or item[0] != kind.name:
                return False
            values = item[1] if kind == T.KEYWORD_LIST else [item[1]]
            return any(test(str(v)) for v in values)

        return Step((Range(every),), predicate=predicate, needs_state=True)


def _number(leaf: Leaf, value: Value) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidQueryError(f"{leaf.field} takes numbers, not {value!r}", leaf.position)
    return value


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bool_text(value: Any) -> str:
    return "true" if value is True or value == "true" else "false"


def _text_match(leaf: Leaf) -> Callable[[str], bool]:
    """TEXT: `=` holds when the text has every word of the value (Temporal's full-text
    match), `!=` when it does not; IN when it has the words of one of the values."""
    match leaf:
        case Comparison(op="=" | "!=" as op, value=value):
            words = tokens(str(value))
            return lambda have: (words <= tokens(have)) == (op == "=")
        case In(values=values, negated=negated):
            wanted = [tokens(str(v)) for v in values]
            return lambda have: any(w <= tokens(have) for w in wanted) != negated
    raise InvalidQueryError("TEXT attributes take =, !=, IN and NOT IN", leaf.position)


def _fitting_types(leaf: Leaf) -> set[SearchAttributeIndexedValueType]:
    values = _values(leaf)
    if isinstance(leaf, StartsWith):
        return {T.KEYWORD, T.KEYWORD_LIST}
    ranged = isinstance(leaf, Between) or (isinstance(leaf, Comparison)
                                           and leaf.op not in ("=", "!="))
    if all(isinstance(v, bool) for v in values):
        return set() if ranged else {T.BOOL}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return {T.INT, T.DOUBLE}
    if all(isinstance(v, str) for v in values):
        fits = {T.KEYWORD, T.KEYWORD_LIST}
        if not ranged:
            fits.add(T.TEXT)
        if all(parse_datetime(v) is not None for v in values):
            fits.add(T.DATETIME)
        return fits
    return set()


def _describe_leaf(leaf: Leaf) -> str:
    match leaf:
        case Comparison(op=op, value=value):
            return f"{op} {value!r}"
        case Between():
            return "BETWEEN"
        case In():
            return "IN"
    return "STARTS_WITH"
