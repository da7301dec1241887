"""Search attributes: typed values a workflow is listed and found by (docs/visibility.md),
with temporalio's names: `SearchAttributeKey.for_keyword("CustomerId")`,
`SearchAttributePair`, `TypedSearchAttributes`, `SearchAttributeUpdate`.

A value's type travels with it: given by a typed key, or taken from the Python value of
the plain dict form (`{"CustomerId": "c-1"}`: str -> KEYWORD, int -> INT, float ->
DOUBLE, bool -> BOOL, datetime -> DATETIME, list of str -> KEYWORD_LIST; TEXT only
through `SearchAttributeKey.for_text`). Nothing is registered beforehand: the Lua
transitions that index a value cannot read a namespace-wide registry (another hash slot
on Redis Cluster) and workflow code may not do I/O, so the type is part of the value.

Wire form (the JSON that rd_start, the UpsertWorkflowSearchAttributes event and the
run's `search_attributes` hash field carry): `{"Name": ["KEYWORD", "c-1"], ...}`, every
scalar as text (ints in decimal, datetimes as epoch ms, bools "true"/"false") so the Lua
side never re-encodes a number; `{"Name": null}` in an upsert removes the attribute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from engine.errors import InvalidArgumentError


class SearchAttributeIndexedValueType(IntEnum):
    """temporalio's numbering."""

    TEXT = 0
    KEYWORD = 1
    INT = 2
    DOUBLE = 3
    BOOL = 4
    DATETIME = 5
    KEYWORD_LIST = 6


T = SearchAttributeIndexedValueType
#: Types whose per-attribute index is scored by the value (ranges are index reads).
NUMERIC_TYPES = frozenset({T.INT, T.DOUBLE, T.DATETIME})
#: Types with one index per value (equality and IN are index reads).
VALUE_INDEXED_TYPES = frozenset({T.KEYWORD, T.KEYWORD_LIST, T.BOOL})

#: Names the query language gives to each run's own fields: not custom attributes.
BUILT_IN_NAMES = frozenset({
    "WorkflowId", "WorkflowType", "ExecutionStatus", "StartTime", "CloseTime", "RunId",
    "TaskQueue", "ExecutionTime", "ExecutionDuration", "HistoryLength",
})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_ATTRIBUTES = 100
#: A keyword is part of an index key name; a text is read back for filtering.
MAX_KEYWORD_CHARS = 256
MAX_TEXT_CHARS = 4096
MAX_LIST_ITEMS = 100
_INT_RANGE = (-(2**63), 2**63 - 1)

V = TypeVar("V")


@dataclass(frozen=True)
class SearchAttributeKey(Generic[V]):
    """A typed attribute name (temporalio's `SearchAttributeKey.for_keyword(...)`)."""

    name: str
    indexed_value_type: SearchAttributeIndexedValueType

    @staticmethod
    def for_text(name: str) -> SearchAttributeKey[str]:
        return SearchAttributeKey(check_name(name), T.TEXT)

    @staticmethod
    def for_keyword(name: str) -> SearchAttributeKey[str]:
        return SearchAttributeKey(check_name(name), T.KEYWORD)

    @staticmethod
    def for_int(name: str) -> SearchAttributeKey[int]:
        return SearchAttributeKey(check_name(name), T.INT)

    @staticmethod
    def for_float(name: str) -> SearchAttributeKey[float]:
        return SearchAttributeKey(check_name(name), T.DOUBLE)

    @staticmethod
    def for_bool(name: str) -> SearchAttributeKey[bool]:
        return SearchAttributeKey(check_name(name), T.BOOL)

    @staticmethod
    def for_datetime(name: str) -> SearchAttributeKey[datetime]:
        return SearchAttributeKey(check_name(name), T.DATETIME)

    @staticmethod
    def for_keyword_list(name: str) -> SearchAttributeKey[Sequence[str]]:
        return SearchAttributeKey(check_name(name), T.KEYWORD_LIST)

    def value_set(self, value: V) -> SearchAttributeUpdate[V]:
        """An update (workflow.upsert_search_attributes) that sets the value."""
        return SearchAttributeUpdate(self, value)

    def value_unset(self) -> SearchAttributeUpdate[V]:
        """An update that removes the attribute."""
        return SearchAttributeUpdate(self, None)


class SearchAttributePair(NamedTuple, Generic[V]):
    key: SearchAttributeKey[V]
    value: V


class SearchAttributeUpdate(NamedTuple, Generic[V]):
    key: SearchAttributeKey[V]
    #: None: remove the attribute.
    value: V | None


class TypedSearchAttributes(Sequence[SearchAttributePair[Any]]):
    """temporalio's collection of typed pairs, looked up by key."""

    empty: ClassVar[TypedSearchAttributes]

    def __init__(self, search_attributes: Sequence[SearchAttributePair[Any]] = ()) -> None:
        self.search_attributes = list(search_attributes)

    def __len__(self) -> int:
        return len(self.search_attributes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, SearchAttributeKey):
            for pair in self.search_attributes:
                if pair.key == index:
                    return pair.value
            raise KeyError(index)
        return self.search_attributes[index]

    def __iter__(self) -> Iterator[SearchAttributePair[Any]]:
        return iter(self.search_attributes)

    def __contains__(self, key: object) -> bool:
        return any(pair.key == key or pair == key for pair in self.search_attributes)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TypedSearchAttributes)
                and sorted(self.search_attributes, key=repr)
                == sorted(other.search_attributes, key=repr))

    def __hash__(self) -> int:
        return hash(tuple(sorted(map(repr, self.search_attributes))))

    def __repr__(self) -> str:
        return f"TypedSearchAttributes({self.search_attributes!r})"

    def get(self, key: SearchAttributeKey[V], default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def updated(self, *pairs: SearchAttributePair[Any]) -> TypedSearchAttributes:
        names = {p.key.name for p in pairs}
        return TypedSearchAttributes(
            [p for p in self.search_attributes if p.key.name not in names] + list(pairs)
        )


TypedSearchAttributes.empty = TypedSearchAttributes()

#: What start_workflow(search_attributes=...) and upsert_search_attributes take.
SearchAttributesInput = (
    Mapping[str, Any]
    | TypedSearchAttributes
    | Sequence[SearchAttributePair[Any] | SearchAttributeUpdate[Any]]
)
Wire = dict[str, list[Any] | None]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"search attribute name {name!r}: a letter or '_', then letters, digits or '_' "
            "(at most 64)"
        )
    if name in BUILT_IN_NAMES:
        raise InvalidArgumentError(f"search attribute name {name!r} is reserved (a built-in)")
    return name


def infer_type(name: str, value: Any) -> SearchAttributeIndexedValueType:
    """The type of a plain value (the dict form)."""
    if isinstance(value, bool):
        return T.BOOL
    if isinstance(value, int):
        return T.INT
    if isinstance(value, float):
        return T.DOUBLE
    if isinstance(value, str):
        return T.KEYWORD
    if isinstance(value, datetime):
        return T.DATETIME
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return T.KEYWORD_LIST
    raise InvalidArgumentError(
        f"search attribute {name!r}: {value!r} is not a str, int, float, bool, datetime or "
        "list of str (use SearchAttributeKey.for_text for TEXT)"
    )


def _keyword(name: str, value: Any, limit: int = MAX_KEYWORD_CHARS) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"search attribute {name!r}: {value!r} is not a str")
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidArgumentError(
            f"search attribute {name!r}: at most {limit} characters, no control characters"
        )
    return value


def encode_value(name: str, kind: SearchAttributeIndexedValueType, value: Any) -> list[Any]:
    """One attribute's wire form `[TYPE, text or list of text]` (InvalidArgumentError if
    the value does not fit the type)."""
    match kind:
        case T.KEYWORD:
            text: Any = _keyword(name, value)
        case T.TEXT:
            text = _keyword(name, value, MAX_TEXT_CHARS)
        case T.INT:
            if isinstance(value, bool) or not isinstance(value, int) or not (
                _INT_RANGE[0] <= value <= _INT_RANGE[1]
            ):
                raise InvalidArgumentError(f"search attribute {name!r}: {value!r} is not an int64")
            text = str(value)
        case T.DOUBLE:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value
            ):
                raise InvalidArgumentError(
                    f"search attribute {name!r}: {value!r} is not a finite number"
                )
            text = repr(float(value))
        case T.BOOL:
            if not isinstance(value, bool):
                raise InvalidArgumentError(f"search attribute {name!r}: {value!r} is not a bool")
            text = "true" if value else "false"
        case T.DATETIME:
            if not isinstance(value, datetime):
                raise InvalidArgumentError(
                    f"search attribute {name!r}: {value!r} is not a datetime"
                )
            text = str(datetime_ms(value))
        case T.KEYWORD_LIST:
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise InvalidArgumentError(
                    f"search attribute {name!r}: {value!r} is not a list of str"
                )
            if len(value) > MAX_LIST_ITEMS:
                raise InvalidArgumentError(
                    f"search attribute {name!r}: at most {MAX_LIST_ITEMS} keywords"
                )
            text = list(dict.fromkeys(_keyword(name, v) for v in value))
    return [kind.name, text]


def datetime_ms(value: datetime) -> int:
    """Epoch ms of a datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def to_wire(attributes: SearchAttributesInput | None, *, upsert: bool = False) -> Wire:
    """Any accepted input form as the wire dict. In an upsert, None (or [] in the dict
    form, temporalio's legacy way) removes an attribute."""
    if attributes is None:
        return {}
    out: Wire = {}
    if isinstance(attributes, Mapping):
        for name, value in attributes.items():
            check_name(name)
            if value is None or (isinstance(value, list | tuple) and not value):
                if not upsert:
                    raise InvalidArgumentError(f"search attribute {name!r} has no value")
                out[name] = None
                continue
            if (isinstance(value, list | tuple) and len(value) == 1
                    and not isinstance(value[0], str)):
                value = value[0]  # temporalio's legacy form: [value]
            out[name] = encode_value(name, infer_type(name, value), value)
    else:
        for item in attributes:
            if not isinstance(item, SearchAttributePair | SearchAttributeUpdate) or not (
                isinstance(item.key, SearchAttributeKey)
            ):
                raise InvalidArgumentError(
                    f"{item!r} is not a SearchAttributePair or SearchAttributeUpdate"
                )
            name = check_name(item.key.name)
            if item.value is None:
                if not upsert:
                    raise InvalidArgumentError(f"search attribute {name!r} has no value")
                out[name] = None
            else:
                out[name] = encode_value(name, item.key.indexed_value_type, item.value)
    if len(out) > MAX_ATTRIBUTES:
        raise InvalidArgumentError(f"at most {MAX_ATTRIBUTES} search attributes")
    return out


def decode_value(kind: SearchAttributeIndexedValueType, text: Any) -> Any:
    match kind:
        case T.INT:
            return int(text)
        case T.DOUBLE:
            return float(text)
        case T.BOOL:
            return text == "true"
        case T.DATETIME:
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        case T.KEYWORD_LIST:
            return list(text) if isinstance(text, list) else []
    return str(text)


def from_wire(wire: Mapping[str, Any] | None) -> TypedSearchAttributes:
    """The stored wire dict as typed pairs (entries that do not parse are left out)."""
    pairs: list[SearchAttributePair[Any]] = []
    for name, item in sorted((wire or {}).items()):
        try:
            kind = SearchAttributeIndexedValueType[item[0]]
            pairs.append(SearchAttributePair(SearchAttributeKey(name, kind),
                                             decode_value(kind, item[1])))
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return TypedSearchAttributes(pairs)


def plain(typed: TypedSearchAttributes) -> dict[str, Any]:
    """Name -> value (the dict form describe() and workflow.info() show)."""
    return {pair.key.name: pair.value for pair in typed}


def merged(current: Mapping[str, Any], update: Wire) -> dict[str, Any]:
    """The wire dict after an upsert (what the Lua side computes too)."""
    out = dict(current)
    for name, item in update.items():
        if item is None:
            out.pop(name, None)
        else:
            out[name] = item
    return out
