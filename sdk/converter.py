"""The data converter: Python values <-> the plain values MessagePack carries, following
type hints (as temporalio's `temporalio.converter.value_to_type` does for JSON).

Pure: no I/O, no codec. `value_to_wire` turns a value into plain data (dict, list, str,
int, float, bool, None, bytes) that the payload codec (engine/codec.py) encodes, and
checks it against the hint the receiver will decode it with; `value_to_type` turns
decoded plain data into the hinted type. The wire forms stay readable from redis-cli
and from other languages:

- a dataclass, a pydantic v2 model (when pydantic is installed), a TypedDict: a map of
  its fields (a pydantic model as its `model_dump(mode="json", by_alias=True)`);
- an Enum: its value (so an IntEnum is an int on the wire, an IntEnum again in code);
- datetime, date: ISO 8601 text; UUID and Decimal: their text; bytes: MessagePack bin;
- tuples, sets, frozensets: arrays; a NamedTuple: an array of its fields.

A value that does not fit its hint raises `PayloadError`, naming what it was (`what`:
"parameter 'order' of Order.run") and where inside it (".items[2].sku").
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Literal, TypeVar, Union
from uuid import UUID

import msgpack

from engine.errors import PayloadError

__all__ = ["value_to_type", "value_to_wire"]

_NoneType = type(None)
#: Values MessagePack carries as they are (exact types: subclasses such as IntEnum or
#: StrEnum are converted, so that the receiver gets the plain value).
_NATIVE = frozenset({_NoneType, bool, int, float, str, bytes})
_SEQUENCE_ORIGINS = (list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable,
                     cabc.Collection)
_SET_ORIGINS = (set, frozenset, cabc.Set, cabc.MutableSet)
_MAPPING_ORIGINS = (dict, cabc.Mapping, cabc.MutableMapping)
#: What a sender may pass for an unparametrised container hint.
_BARE_ACCEPTS: dict[Any, Any] = {list: list | tuple, dict: cabc.Mapping, tuple: tuple | list,
                                 set: cabc.Set, frozenset: cabc.Set}
_NATIVE_BASES: tuple[Any, ...] = (bool, int, float, str, bytes)
#: Unparametrised container hints (`list`, `Mapping`): their items are taken as they are.
_BARE: dict[Any, Any] = {
    **{o: list for o in _SEQUENCE_ORIGINS}, **{o: set for o in _SET_ORIGINS},
    **{o: dict for o in _MAPPING_ORIGINS}, frozenset: frozenset, tuple: tuple,
}


class _Misfit(Exception):
    """A value that does not fit; `path` collects where, innermost first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def at(self, segment: str) -> _Misfit:
        self.path.append(segment)
        return self

    def error(self, what: str | Callable[[], str]) -> PayloadError:
        what = what() if callable(what) else what
        where = "".join(reversed(self.path))
        return PayloadError(f"{what}, at {where}: {self.reason}" if where
                            else f"{what}: {self.reason}")


def value_to_type(hint: Any, value: Any, *, what: str | Callable[[], str] = "value") -> Any:
    """Convert `value` (plain data, as decoded from a payload) to `hint`. Raises
    `PayloadError` naming `what` (or what it returns: made only on failure) when it
    does not fit."""
    try:
        return _decode(hint, value)
    except _Misfit as misfit:
        raise misfit.error(what) from None


def value_to_wire(value: Any, hint: Any = Any, *, what: str | Callable[[], str] = "value") -> Any:
    """Convert `value` to plain data for the payload codec, checking that it fits `hint`
    (the type the receiver converts it to). Raises `PayloadError` naming `what`."""
    try:
        return _encode(value, hint)
    except _Misfit as misfit:
        raise misfit.error(what) from None


# --- hints ------------------------------------------------------------------------------


def _hint_name(hint: Any) -> str:
    if hint is _NoneType:
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _got(value: Any) -> str:
    return f"got {type(value).__qualname__}"


def _is_any(hint: Any) -> bool:
    return hint is Any or hint is object or isinstance(hint, TypeVar)


def _unwrap(hint: Any) -> Any:
    """Annotated[X, ...] and NewType are X; a string hint has to be resolved first."""
    while True:
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        elif getattr(hint, "__supertype__", None) is not None:
            hint = hint.__supertype__
        elif isinstance(hint, str | typing.ForwardRef):
            raise _Misfit(f"type hint {hint!r} is not resolved (is it defined at module level?)")
        else:
            return hint


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool, bool], ...]:
    """A dataclass's fields: (name, hint, init, required)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError and friends: say which class
        raise _Misfit(
            f"cannot resolve the type hints of dataclass {cls.__qualname__}: {exc}"
        ) from None
    return tuple(
        (f.name, hints.get(f.name, Any), f.init,
         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


@functools.cache
def _typed_dict_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _pydantic_model(hint: Any) -> bool:
    """A pydantic v2 model class. pydantic is never imported here: a program whose
    values are pydantic models has imported it already."""
    pydantic = sys.modules.get("pydantic")
    base = getattr(pydantic, "BaseModel", None)
    return (base is not None and isinstance(hint, type) and issubclass(hint, base)
            and hasattr(hint, "model_validate"))


def _is_named_tuple(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


# --- decoding: plain data -> hint -------------------------------------------------------


def _decode(hint: Any, value: Any) -> Any:
    if type(value) is hint and hint in _NATIVE:  # the common case, first
        return value
    if _is_any(hint):
        return value
    hint = _unwrap(hint)
    if hint is None or hint is _NoneType:
        if value is not None:
            raise _Misfit(f"expected None, {_got(value)}")
        return None
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return _decode_union(hint, value)
    if origin is Literal:
        for choice in typing.get_args(hint):
            if type(choice) is type(value) and choice == value:
                return choice
            if isinstance(choice, Enum) and _plain(choice) == value:
                return choice
        raise _Misfit(f"expected one of {list(typing.get_args(hint))!r}, got {value!r:.40}")
    if origin is not None:
        return _decode_generic(hint, origin, typing.get_args(hint), value)
    if not isinstance(hint, type):
        raise _Misfit(f"unsupported type hint {hint!r}")
    return _decode_class(hint, value)


def _decode_union(hint: Any, value: Any) -> Any:
    arms = typing.get_args(hint)
    if value is None and _NoneType in arms:
        return None
    rest = [arm for arm in arms if arm is not _NoneType]
    if len(rest) == 1:  # Optional[X]: X's own message says what does not fit
        return _decode(rest[0], value)
    for arm in rest:  # in order, first fit wins (as temporalio)
        try:
            return _decode(arm, value)
        except _Misfit:
            continue
    raise _Misfit(f"expected {_hint_name(hint)}, {_got(value)}")


def _convert_items(convert: Callable[[Any, Any], Any], hint: Any, values: Any) -> list[Any]:
    """`convert(hint, item)` of each item (`_decode`, or `_encode_as` when encoding); a
    misfit names the item's index."""
    out = []
    for index, item in enumerate(values):
        try:
            out.append(convert(hint, item))
        except _Misfit as misfit:
            raise misfit.at(f"[{index}]") from None
    return out


def _convert_mapping(
    convert: Callable[[Any, Any], Any], key_hint: Any, value_hint: Any, value: Any
) -> dict[Any, Any]:
    """Each key and item converted as `_convert_items` converts items; a misfit names
    the key."""
    out = {}
    for key, item in value.items():
        try:
            converted_key = convert(key_hint, key)
        except _Misfit as misfit:
            raise misfit.at(f"[key {key!r:.40}]") from None
        try:
            out[converted_key] = convert(value_hint, item)
        except _Misfit as misfit:
            raise misfit.at(f"[{key!r:.40}]") from None
    return out


def _decode_generic(hint: Any, origin: Any, args: tuple[Any, ...], value: Any) -> Any:
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Misfit(f"expected {_hint_name(hint)} (an array), {_got(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert_items(_decode, args[0], value))
        if args == ((),):  # tuple[()]
            args = ()
        if len(value) != len(args):
            raise _Misfit(f"expected {_hint_name(hint)} ({len(args)} items), got {len(value)}")
        out = []
        for index, (item_hint, item) in enumerate(zip(args, value, strict=True)):
            try:
                out.append(_decode(item_hint, item))
            except _Misfit as misfit:
                raise misfit.at(f"[{index}]") from None
        return tuple(out)
    if origin in _MAPPING_ORIGINS:
        if not isinstance(value, cabc.Mapping):
            raise _Misfit(f"expected {_hint_name(hint)} (a map), {_got(value)}")
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return _convert_mapping(_decode, key_hint, value_hint, value)
    if origin in _SET_ORIGINS or origin in _SEQUENCE_ORIGINS:
        if not isinstance(value, list | tuple):
            raise _Misfit(f"expected {_hint_name(hint)} (an array), {_got(value)}")
        items = _convert_items(_decode, args[0] if args else Any, value)
        if origin is frozenset:
            return frozenset(items)
        return set(items) if origin in _SET_ORIGINS else items
    raise _Misfit(f"unsupported type hint {_hint_name(hint)}")


def _decode_class(hint: type, value: Any) -> Any:
    # Exact primitives first: IntEnum and StrEnum are int and str subclasses.
    if hint is bool:
        if type(value) is not bool:
            raise _Misfit(f"expected bool, {_got(value)}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Misfit(f"expected int, {_got(value)}")
        return int(value)
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Misfit(f"expected float, {_got(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Misfit(f"expected str, {_got(value)}")
        return str(value)
    if hint is bytes:
        if not isinstance(value, bytes | bytearray):
            raise _Misfit(f"expected bytes, {_got(value)}")
        return bytes(value)
    if typing.is_typeddict(hint):  # before isinstance(), which a TypedDict refuses
        return _decode_typed_dict(hint, value)
    if isinstance(value, hint) and not isinstance(value, list | dict):
        return value  # already the type (a value that did not cross the wire)
    if issubclass(hint, Enum):
        try:
            return hint(value)
        except (ValueError, TypeError):
            raise _Misfit(f"{value!r:.40} is not a value of {hint.__qualname__}") from None
    if issubclass(hint, datetime):
        if isinstance(value, msgpack.Timestamp):  # MessagePack's own timestamp (Go, ...)
            return value.to_datetime()
        return _parse_text(hint, value, hint.fromisoformat, "ISO 8601 text")
    if issubclass(hint, date):
        return _parse_text(hint, value, hint.fromisoformat, "ISO 8601 text")
    if issubclass(hint, UUID):
        if isinstance(value, bytes) and len(value) == 16:
            return UUID(bytes=value)
        return _parse_text(hint, value, hint, "text")
    if issubclass(hint, Decimal):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return hint(str(value))
        return _parse_text(hint, value, hint, "text")
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, value)
    if _pydantic_model(hint):
        return _decode_pydantic(hint, value)
    if _is_named_tuple(hint):
        if not isinstance(value, list | tuple):
            raise _Misfit(f"expected {hint.__qualname__} (an array), {_got(value)}")
        hints = typing.get_type_hints(hint)
        fields: tuple[str, ...] = hint._fields  # type: ignore[attr-defined]
        items = [_decode(hints.get(name, Any), item)
                 for name, item in zip(fields, value, strict=False)]
        try:
            return hint(*items)
        except TypeError as exc:
            raise _Misfit(f"{hint.__qualname__}: {exc}") from None
    bare = _BARE.get(hint)
    if bare is not None:
        return _decode_generic(hint, bare, (), value)
    raise _Misfit(f"expected {hint.__qualname__}, {_got(value)}")


def _parse_text(hint: type, value: Any, parse: Any, form: str) -> Any:
    if not isinstance(value, str):
        raise _Misfit(f"expected {hint.__qualname__} ({form}), {_got(value)}")
    try:
        parsed = parse(value)
    except (ValueError, InvalidOperation):
        raise _Misfit(f"expected {hint.__qualname__} ({form}), got {value!r:.40}") from None
    return parsed


def _decode_dataclass(hint: type, value: Any) -> Any:
    if not isinstance(value, cabc.Mapping):
        raise _Misfit(f"expected {hint.__qualname__} (a map of its fields), {_got(value)}")
    kwargs: dict[str, Any] = {}
    for name, field_hint, init, required in _fields(hint):
        if not init:
            continue
        if name not in value:
            if required:
                raise _Misfit(f"{hint.__qualname__} is missing its required field {name!r}")
            continue
        try:
            kwargs[name] = _decode(field_hint, value[name])
        except _Misfit as misfit:
            raise misfit.at(f".{name}") from None
    # Keys that are no field are ignored (as temporalio): a sender with a newer version
    # of the dataclass does not break an older receiver.
    try:
        return hint(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation, say
        raise _Misfit(f"{hint.__qualname__}(...) raised {type(exc).__name__}: {exc}") from None


def _decode_pydantic(hint: Any, value: Any) -> Any:
    try:
        return hint.model_validate(value)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) and errors() else None
        if first is None:
            raise _Misfit(f"{hint.__qualname__}: {exc}") from None
        misfit = _Misfit(f"{hint.__qualname__}: {first.get('msg', exc)}")
        for part in reversed(first.get("loc", ())):
            misfit.at(f"[{part}]" if isinstance(part, int) else f".{part}")
        raise misfit from None


def _decode_typed_dict(hint: Any, value: Any) -> dict[str, Any]:
    if not isinstance(value, cabc.Mapping):
        raise _Misfit(f"expected {hint.__qualname__} (a map), {_got(value)}")
    hints = _typed_dict_hints(hint)
    for key in hint.__required_keys__:
        if key not in value:
            raise _Misfit(f"{hint.__qualname__} is missing its required key {key!r}")
    out = {}
    for key, item in value.items():
        try:
            out[key] = _decode(hints.get(key, Any), item)
        except _Misfit as misfit:
            raise misfit.at(f"[{key!r:.40}]") from None
    return out


# --- encoding: value -> plain data, checked against the hint ----------------------------


def _encode(value: Any, hint: Any) -> Any:
    if type(value) is hint and hint in _NATIVE:  # the common case, first
        return value
    if _is_any(hint):
        return _plain(value)
    hint = _unwrap(hint)
    if hint is None or hint is _NoneType:
        if value is not None:
            raise _Misfit(f"expected None, {_got(value)}")
        return None
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        arms = typing.get_args(hint)
        if value is None and _NoneType in arms:
            return None
        rest = [arm for arm in arms if arm is not _NoneType]
        if len(rest) == 1:
            return _encode(value, rest[0])
        for arm in rest:
            try:
                return _encode(value, arm)
            except _Misfit:
                continue
        raise _Misfit(f"expected {_hint_name(hint)}, {_got(value)}")
    if origin is Literal:
        if any(type(choice) is type(value) and choice == value
               for choice in typing.get_args(hint)):
            return _plain(value)
        raise _Misfit(f"expected one of {list(typing.get_args(hint))!r}, got {value!r:.40}")
    if origin is not None:
        return _encode_generic(value, hint, origin, typing.get_args(hint))
    if not isinstance(hint, type):
        raise _Misfit(f"unsupported type hint {hint!r}")
    return _encode_class(value, hint)


def _encode_generic(value: Any, hint: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise _Misfit(f"expected {_hint_name(hint)}, {_got(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return _convert_items(_encode_as, args[0], value)
        if args == ((),):
            args = ()
        if len(value) != len(args):
            raise _Misfit(f"expected {_hint_name(hint)} ({len(args)} items), got {len(value)}")
        out = []
        for index, (item, item_hint) in enumerate(zip(value, args, strict=True)):
            try:
                out.append(_encode(item, item_hint))
            except _Misfit as misfit:
                raise misfit.at(f"[{index}]") from None
        return out
    if origin in _MAPPING_ORIGINS:
        if not isinstance(value, cabc.Mapping):
            raise _Misfit(f"expected {_hint_name(hint)}, {_got(value)}")
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return _convert_mapping(_encode_as, key_hint, value_hint, value)
    if origin in _SET_ORIGINS or origin in _SEQUENCE_ORIGINS:
        allowed: Any = cabc.Set if origin in _SET_ORIGINS else list | tuple | cabc.Set
        if origin is frozenset:
            allowed = frozenset
        elif origin is set:
            allowed = set
        if not isinstance(value, allowed) or isinstance(value, str | bytes | cabc.Mapping):
            raise _Misfit(f"expected {_hint_name(hint)}, {_got(value)}")
        return _convert_items(_encode_as, args[0] if args else Any, value)
    raise _Misfit(f"unsupported type hint {_hint_name(hint)}")


def _encode_as(hint: Any, value: Any) -> Any:
    """`_encode` with `_decode`'s order of arguments, for `_convert_items`."""
    return _encode(value, hint)


def _encode_class(value: Any, hint: type) -> Any:
    if hint is bool:
        if type(value) is not bool:
            raise _Misfit(f"expected bool, {_got(value)}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Misfit(f"expected int, {_got(value)}")
        return int(value)
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Misfit(f"expected float, {_got(value)}")
        return value if type(value) in (int, float) else float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Misfit(f"expected str, {_got(value)}")
        return str(value)
    if hint is bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise _Misfit(f"expected bytes, {_got(value)}")
        return bytes(value)
    if issubclass(hint, Decimal) and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if issubclass(hint, date) and not issubclass(hint, datetime) and isinstance(value, datetime):
        raise _Misfit(f"expected {hint.__qualname__}, got datetime (pass its .date())")
    if typing.is_typeddict(hint):
        if not isinstance(value, cabc.Mapping):
            raise _Misfit(f"expected {hint.__qualname__}, {_got(value)}")
        hints = _typed_dict_hints(hint)
        missing = [k for k in hint.__required_keys__ if k not in value]  # type: ignore[attr-defined]
        if missing:
            raise _Misfit(f"{hint.__qualname__} is missing its required key {missing[0]!r}")
        out = {}
        for key, item in value.items():
            try:
                out[key] = _encode(item, hints.get(key, Any))
            except _Misfit as misfit:
                raise misfit.at(f"[{key!r:.40}]") from None
        return out
    bare = _BARE_ACCEPTS.get(hint)
    if bare is not None:
        if not isinstance(value, bare):
            raise _Misfit(f"expected {hint.__qualname__}, {_got(value)}")
        return _plain(value)
    if not isinstance(value, hint):
        raise _Misfit(f"expected {hint.__qualname__}, {_got(value)}")
    return _plain(value)


def _plain(value: Any) -> Any:
    """Plain data for `value` by its own type (no hint to check against)."""
    kind = type(value)
    if kind in _NATIVE:
        return value
    if isinstance(value, Enum):
        return _plain(value.value)
    if kind is list or kind is tuple:
        return _convert_items(_encode_as, Any, value)
    if kind is dict:
        return _convert_mapping(_encode_as, Any, Any, value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for name, field_hint, _init, _required in _fields(type(value)):
            try:
                out[name] = _encode(getattr(value, name), field_hint)
            except _Misfit as misfit:
                raise misfit.at(f".{name}") from None
        return out
    if _pydantic_model(kind):
        return _plain(value.model_dump(mode="json", by_alias=True))
    if _is_named_tuple(kind):
        hints = typing.get_type_hints(kind)
        out_items = []
        for name in kind._fields:
            try:
                out_items.append(_encode(getattr(value, name), hints.get(name, Any)))
            except _Misfit as misfit:
                raise misfit.at(f".{name}") from None
        return out_items
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, cabc.Mapping):
        return _convert_mapping(_encode_as, Any, Any, value)
    if isinstance(value, list | tuple | cabc.Set | collections.deque):
        return _convert_items(_encode_as, Any, value)
    for base in _NATIVE_BASES:  # subclasses of the natives
        if isinstance(value, base):
            return base(value)
    raise _Misfit(
        f"a value of type {kind.__qualname__} cannot be encoded (use plain data, a "
        "dataclass, an Enum, datetime/date, UUID, Decimal or a pydantic model)"
    )

