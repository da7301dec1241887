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

Decoding is in sdk/_decode_to_type.py, encoding in sdk/_encode_to_wire.py, and what
both share (hint inspection, the walks over containers) in sdk/_conversion_hints.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sdk._conversion_hints import Misfit
from sdk._decode_to_type import decode
from sdk._encode_to_wire import encode

__all__ = ["value_to_type", "value_to_wire"]


def value_to_type(hint: Any, value: Any, *, what: str | Callable[[], str] = "value") -> Any:
    """Convert `value` (plain data, as decoded from a payload) to `hint`. Raises
    `PayloadError` naming `what` (or what it returns: made only on failure) when it
    does not fit."""
    try:
        return decode(hint, value)
    except Misfit as misfit:
        raise misfit.error(what) from None


def value_to_wire(value: Any, hint: Any = Any, *, what: str | Callable[[], str] = "value") -> Any:
    """Convert `value` to plain data for the payload codec, checking that it fits `hint`
    (the type the receiver converts it to). Raises `PayloadError` naming `what`."""
    try:
        return encode(value, hint)
    except Misfit as misfit:
        raise misfit.error(what) from None
