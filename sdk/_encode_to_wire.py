"""Encoding for the data converter (sdk/converter.py): a Python value to the plain data
MessagePack carries, checked against the hint the receiver will decode it with."""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import typing
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal
from uuid import UUID

from sdk._conversion_hints import (
    BARE_ACCEPTS,
    MAPPING_ORIGINS,
    NATIVE,
    NATIVE_BASES,
    SEQUENCE_ORIGINS,
    SET_ORIGINS,
    Misfit,
    NoneType,
    check_primitive,
    convert_items,
    convert_mapping,
    convert_tuple,
    convert_typed_dict,
    convert_union,
    fields,
    got,
    hint_name,
    is_any,
    is_named_tuple,
    is_union,
    pydantic_model,
    unwrap,
)


def encode(value: Any, hint: Any) -> Any:
    if type(value) is hint and hint in NATIVE:  # the common case, first
        return value
    if is_any(hint):
        return plain(value)
    hint = unwrap(hint)
    if hint is None or hint is NoneType:
        if value is not None:
            raise Misfit(f"expected None, {got(value)}")
        return None
    origin = typing.get_origin(hint)
    if is_union(origin):
        return convert_union(encode_as, hint, value)
    if origin is Literal:
        if any(type(choice) is type(value) and choice == value
               for choice in typing.get_args(hint)):
            return plain(value)
        raise Misfit(f"expected one of {list(typing.get_args(hint))!r}, got {value!r:.40}")
    if origin is not None:
        return _encode_generic(value, hint, origin, typing.get_args(hint))
    if not isinstance(hint, type):
        raise Misfit(f"unsupported type hint {hint!r}")
    return _encode_class(value, hint)


def encode_as(hint: Any, value: Any) -> Any:
    """`encode` with the decoder's order of arguments: the walks' conversion."""
    return encode(value, hint)


def _encode_generic(value: Any, hint: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise Misfit(f"expected {hint_name(hint)}, {got(value)}")
        return convert_tuple(encode_as, hint, args, value)
    if origin in MAPPING_ORIGINS:
        if not isinstance(value, cabc.Mapping):
            raise Misfit(f"expected {hint_name(hint)}, {got(value)}")
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return convert_mapping(encode_as, key_hint, value_hint, value)
    if origin in SET_ORIGINS or origin in SEQUENCE_ORIGINS:
        allowed: Any = cabc.Set if origin in SET_ORIGINS else list | tuple | cabc.Set
        if origin is frozenset:
            allowed = frozenset
        elif origin is set:
            allowed = set
        if not isinstance(value, allowed) or isinstance(value, str | bytes | cabc.Mapping):
            raise Misfit(f"expected {hint_name(hint)}, {got(value)}")
        return convert_items(encode_as, args[0] if args else Any, value)
    raise Misfit(f"unsupported type hint {hint_name(hint)}")


def _encode_class(value: Any, hint: type) -> Any:
    if check_primitive(hint, value, buffers=memoryview):
        if hint is bool or (hint is float and type(value) in (int, float)):
            return value  # an int for a float stays an int on the wire
        return hint(value)
    if issubclass(hint, Decimal) and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if issubclass(hint, date) and not issubclass(hint, datetime) and isinstance(value, datetime):
        raise Misfit(f"expected {hint.__qualname__}, got datetime (pass its .date())")
    if typing.is_typeddict(hint):
        return convert_typed_dict(encode_as, hint, value)
    bare = BARE_ACCEPTS.get(hint)
    if bare is not None:
        if not isinstance(value, bare):
            raise Misfit(f"expected {hint.__qualname__}, {got(value)}")
        return plain(value)
    if not isinstance(value, hint):
        raise Misfit(f"expected {hint.__qualname__}, {got(value)}")
    return plain(value)


def plain(value: Any) -> Any:
    """Plain data for `value` by its own type (no hint to check against)."""
    kind = type(value)
    if kind in NATIVE:
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if kind is list or kind is tuple:
        return convert_items(encode_as, Any, value)
    if kind is dict:
        return convert_mapping(encode_as, Any, Any, value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_fields(value, fields(type(value)), dict)
    if pydantic_model(kind):
        return plain(value.model_dump(mode="json", by_alias=True))
    if is_named_tuple(kind):
        hints = typing.get_type_hints(kind)
        return _encode_fields(value, [(name, hints.get(name, Any)) for name in kind._fields],
                              list)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, cabc.Mapping):
        return convert_mapping(encode_as, Any, Any, value)
    if isinstance(value, list | tuple | cabc.Set | collections.deque):
        return convert_items(encode_as, Any, value)
    for base in NATIVE_BASES:  # subclasses of the natives
        if isinstance(value, base):
            return base(value)
    raise Misfit(
        f"a value of type {kind.__qualname__} cannot be encoded (use plain data, a "
        "dataclass, an Enum, datetime/date, UUID, Decimal or a pydantic model)"
    )


def _encode_fields(value: Any, named: typing.Iterable[tuple[Any, ...]], into: type) -> Any:
    """A dataclass's (`into` dict) or NamedTuple's (`into` list) fields, each encoded by
    its hint: `named` gives (name, hint, ...) of each; a misfit names the field."""
    out: dict[str, Any] = {}
    for name, field_hint, *_ in named:
        try:
            out[name] = encode(getattr(value, name), field_hint)
        except Misfit as misfit:
            raise misfit.at(f".{name}") from None
    return out if into is dict else list(out.values())
