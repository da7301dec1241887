"""A workflow's memo: values a run carries that are not its input (temporalio's
`memo=`), read back by `describe().memo` and `workflow.memo()`. Stored as one
payload (a dict of plain values, through the client's codec), untyped: values come
back as they decode unless the reader gives a type hint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidArgumentError, PayloadError
from sdk.converter import value_to_wire


def memo_to_wire(memo: Mapping[str, Any]) -> dict[str, Any]:
    """The memo as plain data; a clear error for what is not a string-keyed mapping."""
    if not isinstance(memo, Mapping):
        raise InvalidArgumentError(f"memo must be a mapping of str keys, not {memo!r}")
    out: dict[str, Any] = {}
    for key, value in memo.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(f"memo keys must be str, not {key!r}")
        out[key] = value_to_wire(value, what=f"memo value {key!r}")
    return out


def memo_from_wire(value: Any) -> dict[str, Any]:
    """The decoded memo payload as a dict (a payload that is not one: PayloadError)."""
    if not isinstance(value, dict):
        raise PayloadError(f"the memo is not a mapping: {value!r}")
    return {str(k): v for k, v in value.items()}
