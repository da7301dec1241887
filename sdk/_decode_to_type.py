"""Decoding for the data converter (sdk/converter.py): plain data, as decoded from a
payload, to the type its hint names."""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import typing
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Literal
from uuid import UUID

import msgpack

from sdk._conversion_hints import (
    BARE,
    MAPPING_ORIGINS,
    NATIVE,
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
from sdk._encode_to_wire import plain


def decode(hint: Any, value: Any) -> Any:
    if type(value) is hint and hint in NATIVE:  # the common case, first
        return value
    if is_any(hint):
        return value
    hint = unwrap(hint)
    if hint is None or hint is NoneType:
        if value is not None:
            raise Misfit(f"expected None, {got(value)}")
        return None
    origin = typing.get_origin(hint)
    if is_union(origin):
        return convert_union(decode, hint, value)
    if origin is Literal:
        for choice in typing.get_args(hint):
            if type(choice) is type(value) and choice == value:
                return choice
            if isinstance(choice, Enum) and plain(choice) == value:
                return choice
        raise Misfit(f"expected one of {list(typing.get_args(hint))!r}, got {value!r:.40}")
    if origin is not None:
        return _decode_generic(hint, origin, typing.get_args(hint), value)
    if not isinstance(hint, type):
        raise Misfit(f"unsupported type hint {hint!r}")
    return _decode_class(hint, value)


def _decode_generic(hint: Any, origin: Any, args: tuple[Any, ...], value: Any) -> Any:
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise Misfit(f"expected {hint_name(hint)} (an array), {got(value)}")
        return tuple(convert_tuple(decode, hint, args, value))
    if origin in MAPPING_ORIGINS:
        if not isinstance(value, cabc.Mapping):
            raise Misfit(f"expected {hint_name(hint)} (a map), {got(value)}")
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return convert_mapping(decode, key_hint, value_hint, value)
    if origin in SET_ORIGINS or origin in SEQUENCE_ORIGINS:
        if not isinstance(value, list | tuple):
            raise Misfit(f"expected {hint_name(hint)} (an array), {got(value)}")
        items = convert_items(decode, args[0] if args else Any, value)
        if origin is frozenset:
            return frozenset(items)
        return set(items) if origin in SET_ORIGINS else items
    raise Misfit(f"unsupported type hint {hint_name(hint)}")


def _decode_class(hint: type, value: Any) -> Any:
    # Exact primitives first: IntEnum and StrEnum are int and str subclasses.
    if check_primitive(hint, value):
        return value if hint is bool else hint(value)
    if typing.is_typeddict(hint):  # before isinstance(), which a TypedDict refuses
        return convert_typed_dict(decode, hint, value, " (a map)")
    if isinstance(value, hint) and not isinstance(value, list | dict):
        return value  # already the type (a value that did not cross the wire)
    if issubclass(hint, Enum):
        try:
            return hint(value)
        except (ValueError, TypeError):
            raise Misfit(f"{value!r:.40} is not a value of {hint.__qualname__}") from None
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
    if pydantic_model(hint):
        return _decode_pydantic(hint, value)
    if is_named_tuple(hint):
        if not isinstance(value, list | tuple):
            raise Misfit(f"expected {hint.__qualname__} (an array), {got(value)}")
        hints = typing.get_type_hints(hint)
        names: tuple[str, ...] = hint._fields  # type: ignore[attr-defined]
        items = [decode(hints.get(name, Any), item)
                 for name, item in zip(names, value, strict=False)]
        try:
            return hint(*items)
        except TypeError as exc:
            raise Misfit(f"{hint.__qualname__}: {exc}") from None
    bare = BARE.get(hint)
    if bare is not None:
        return _decode_generic(hint, bare, (), value)
    raise Misfit(f"expected {hint.__qualname__}, {got(value)}")


def _parse_text(hint: type, value: Any, parse: Any, form: str) -> Any:
    if not isinstance(value, str):
        raise Misfit(f"expected {hint.__qualname__} ({form}), {got(value)}")
    try:
        parsed = parse(value)
    except (ValueError, InvalidOperation):
        raise Misfit(f"expected {hint.__qualname__} ({form}), got {value!r:.40}") from None
    return parsed


def _decode_dataclass(hint: type, value: Any) -> Any:
    if not isinstance(value, cabc.Mapping):
        raise Misfit(f"expected {hint.__qualname__} (a map of its fields), {got(value)}")
    kwargs: dict[str, Any] = {}
    for name, field_hint, init, required in fields(hint):
        if not init:
            continue
        if name not in value:
            if required:
                raise Misfit(f"{hint.__qualname__} is missing its required field {name!r}")
            continue
        try:
            kwargs[name] = decode(field_hint, value[name])
        except Misfit as misfit:
            raise misfit.at(f".{name}") from None
    # Keys that are no field are ignored (as temporalio): a sender with a newer version
    # of the dataclass does not break an older receiver.
    try:
        return hint(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation, say
        raise Misfit(f"{hint.__qualname__}(...) raised {type(exc).__name__}: {exc}") from None


def _decode_pydantic(hint: Any, value: Any) -> Any:
    try:
        return hint.model_validate(value)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) and errors() else None
        if first is None:
            raise Misfit(f"{hint.__qualname__}: {exc}") from None
        misfit = Misfit(f"{hint.__qualname__}: {first.get('msg', exc)}")
        for part in reversed(first.get("loc", ())):
            misfit.at(f"[{part}]" if isinstance(part, int) else f".{part}")
        raise misfit from None
