"""What the data converter's two directions share (sdk/converter.py): reading type
hints, the misfit that says where a value does not fit, and the walks over items,
maps, tuples and unions that both take with their own conversion of one value.

A conversion is `convert(hint, value)`: `_decode_to_type.decode` or
`_encode_to_wire.encode_as`, so each walk is written once for both directions.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union

from engine.errors import PayloadError

NoneType = type(None)
#: Values MessagePack carries as they are (exact types: subclasses such as IntEnum or
#: StrEnum are converted, so that the receiver gets the plain value).
NATIVE = frozenset({NoneType, bool, int, float, str, bytes})
SEQUENCE_ORIGINS = (list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable,
                    cabc.Collection)
SET_ORIGINS = (set, frozenset, cabc.Set, cabc.MutableSet)
MAPPING_ORIGINS = (dict, cabc.Mapping, cabc.MutableMapping)
#: What a sender may pass for an unparametrised container hint.
BARE_ACCEPTS: dict[Any, Any] = {list: list | tuple, dict: cabc.Mapping, tuple: tuple | list,
                                set: cabc.Set, frozenset: cabc.Set}
NATIVE_BASES: tuple[Any, ...] = (bool, int, float, str, bytes)
#: Unparametrised container hints (`list`, `Mapping`): their items are taken as they are.
BARE: dict[Any, Any] = {
    **{o: list for o in SEQUENCE_ORIGINS}, **{o: set for o in SET_ORIGINS},
    **{o: dict for o in MAPPING_ORIGINS}, frozenset: frozenset, tuple: tuple,
}
#: The primitive hints, each with what a value for it may be (bytes-like ones as well
#: when encoding: see `check_primitive`).
PRIMITIVES: dict[type, Any] = {bool: bool, int: int, float: int | float, str: str,
                               bytes: bytes | bytearray}

Convert = Callable[[Any, Any], Any]


class Misfit(Exception):
    """A value that does not fit; `path` collects where, innermost first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def at(self, segment: str) -> Misfit:
        self.path.append(segment)
        return self

    def error(self, what: str | Callable[[], str]) -> PayloadError:
        what = what() if callable(what) else what
        where = "".join(reversed(self.path))
        return PayloadError(f"{what}, at {where}: {self.reason}" if where
                            else f"{what}: {self.reason}")


# --- hints ------------------------------------------------------------------------------


def hint_name(hint: Any) -> str:
    if hint is NoneType:
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def got(value: Any) -> str:
    return f"got {type(value).__qualname__}"


def is_any(hint: Any) -> bool:
    return hint is Any or hint is object or isinstance(hint, TypeVar)


def is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def unwrap(hint: Any) -> Any:
    """Annotated[X, ...] and NewType are X; a string hint has to be resolved first."""
    while True:
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        elif getattr(hint, "__supertype__", None) is not None:
            hint = hint.__supertype__
        elif isinstance(hint, str | typing.ForwardRef):
            raise Misfit(f"type hint {hint!r} is not resolved (is it defined at module level?)")
        else:
            return hint


@functools.cache
def fields(cls: type) -> tuple[tuple[str, Any, bool, bool], ...]:
    """A dataclass's fields: (name, hint, init, required)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError and friends: say which class
        raise Misfit(
            f"cannot resolve the type hints of dataclass {cls.__qualname__}: {exc}"
        ) from None
    return tuple(
        (f.name, hints.get(f.name, Any), f.init,
         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


@functools.cache
def typed_dict_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def pydantic_model(hint: Any) -> bool:
    """A pydantic v2 model class. pydantic is never imported here: a program whose
    values are pydantic models has imported it already."""
    pydantic = sys.modules.get("pydantic")
    base = getattr(pydantic, "BaseModel", None)
    return (base is not None and isinstance(hint, type) and issubclass(hint, base)
            and hasattr(hint, "model_validate"))


def is_named_tuple(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def check_primitive(hint: type, value: Any, *, buffers: Any = ()) -> bool:
    """Whether `hint` is a primitive (bool, int, float, str, bytes); raises `Misfit` when
    it is and `value` is no value of it. `buffers`: more types bytes may be (the encoder
    takes memoryview). A bool is never an int or a float, though Python says it is."""
    accepts = PRIMITIVES.get(hint)
    if accepts is None:
        return False
    if hint is bytes and buffers:
        accepts = accepts | buffers
    if not isinstance(value, accepts) or (isinstance(value, bool) and hint is not bool):
        raise Misfit(f"expected {hint.__qualname__}, {got(value)}")
    return True


# --- walks, one per shape, for both directions ------------------------------------------


def convert_items(convert: Convert, hint: Any, values: Any) -> list[Any]:
    """`convert(hint, item)` of each item; a misfit names the item's index."""
    out = []
    for index, item in enumerate(values):
        try:
            out.append(convert(hint, item))
        except Misfit as misfit:
            raise misfit.at(f"[{index}]") from None
    return out


def convert_mapping(convert: Convert, key_hint: Any, value_hint: Any, value: Any) -> dict[Any, Any]:
    """Each key and item converted as `convert_items` converts items; a misfit names
    the key."""
    out = {}
    for key, item in value.items():
        try:
            converted_key = convert(key_hint, key)
        except Misfit as misfit:
            raise misfit.at(f"[key {key!r:.40}]") from None
        try:
            out[converted_key] = convert(value_hint, item)
        except Misfit as misfit:
            raise misfit.at(f"[{key!r:.40}]") from None
    return out


def convert_tuple(convert: Convert, hint: Any, args: tuple[Any, ...], value: Any) -> list[Any]:
    """The items of `value` (a list or tuple) for `tuple[...]` hint `hint` with `args`:
    one hint for all (`tuple[X, ...]`) or one an item."""
    if len(args) == 2 and args[1] is Ellipsis:
        return convert_items(convert, args[0], value)
    if args == ((),):  # tuple[()]
        args = ()
    if len(value) != len(args):
        raise Misfit(f"expected {hint_name(hint)} ({len(args)} items), got {len(value)}")
    out = []
    for index, (item_hint, item) in enumerate(zip(args, value, strict=True)):
        try:
            out.append(convert(item_hint, item))
        except Misfit as misfit:
            raise misfit.at(f"[{index}]") from None
    return out


def convert_union(convert: Convert, hint: Any, value: Any) -> Any:
    """`value` as the first arm of union `hint` it fits (in order, as temporalio)."""
    arms = typing.get_args(hint)
    if value is None and NoneType in arms:
        return None
    rest = [arm for arm in arms if arm is not NoneType]
    if len(rest) == 1:  # Optional[X]: X's own message says what does not fit
        return convert(rest[0], value)
    for arm in rest:
        try:
            return convert(arm, value)
        except Misfit:
            continue
    raise Misfit(f"expected {hint_name(hint)}, {got(value)}")


def convert_typed_dict(convert: Convert, hint: Any, value: Any, form: str = "") -> dict[str, Any]:
    """A TypedDict's keys, each converted by its hint. `form` follows the class's name in
    the message when `value` is no map."""
    if not isinstance(value, cabc.Mapping):
        raise Misfit(f"expected {hint.__qualname__}{form}, {got(value)}")
    hints = typed_dict_hints(hint)
    for key in hint.__required_keys__:
        if key not in value:
            raise Misfit(f"{hint.__qualname__} is missing its required key {key!r}")
    out = {}
    for key, item in value.items():
        try:
            out[key] = convert(hints.get(key, Any), item)
        except Misfit as misfit:
            raise misfit.at(f"[{key!r:.40}]") from None
    return out
