"""History events: the registry of their types, and their plain-text form in a Redis
stream entry.

A stream entry reads as it is in redis-cli: `id 5 type ActivityTaskScheduled
activity_id 1 activity_type charge_customer ...`. Only user payloads (`bytes` fields)
are codec bytes; failures and options are JSON text. The event number (`id`) is our own
field: stream entry ids are never the history index.

The event dataclasses live in engine/event_types.py and engine/child_events.py; this
module re-exports them all, so `from engine import events as ev` reaches every event.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from operator import methodcaller
from typing import Any, get_type_hints

from msgpack import unpackb as _unpackb

from engine.child_events import (
    CHILD_CLOSE_TYPES,
    ChildWorkflowExecutionCanceled,
    ChildWorkflowExecutionCompleted,
    ChildWorkflowExecutionFailed,
    ChildWorkflowExecutionStarted,
    ChildWorkflowExecutionTerminated,
    ChildWorkflowExecutionTimedOut,
    ExternalWorkflowExecutionCancelRequested,
    ExternalWorkflowExecutionSignaled,
    RequestCancelExternalWorkflowExecutionFailed,
    RequestCancelExternalWorkflowExecutionInitiated,
    SignalExternalWorkflowExecutionFailed,
    SignalExternalWorkflowExecutionInitiated,
    StartChildWorkflowExecutionFailed,
    StartChildWorkflowExecutionInitiated,
)
from engine.event_types import (
    LOCAL_ACTIVITY_MARKER_NAME,
    PATCH_MARKER_NAME,
    ActivityTaskCanceled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskScheduled,
    ActivityTaskTimedOut,
    Event,
    MarkerRecorded,
    TimerCanceled,
    TimerFired,
    TimerStarted,
    UpsertWorkflowSearchAttributes,
    WorkflowExecutionCanceled,
    WorkflowExecutionCancelRequested,
    WorkflowExecutionCompleted,
    WorkflowExecutionContinuedAsNew,
    WorkflowExecutionFailed,
    WorkflowExecutionSignaled,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
    WorkflowExecutionTimedOut,
    WorkflowExecutionUpdateAccepted,
    WorkflowExecutionUpdateAdmitted,
    WorkflowExecutionUpdateCompleted,
    WorkflowLogicFlag,
    WorkflowTaskCompleted,
    encode_logic_flags,
)

__all__ = [
    "CHILD_CLOSE_TYPES",
    "CLOSE_TYPES",
    "EVENT_TYPES",
    "LOCAL_ACTIVITY_MARKER_NAME",
    "PATCH_MARKER_NAME",
    "START_OPTION_FIELDS",
    "ActivityTaskCanceled",
    "ActivityTaskCompleted",
    "ActivityTaskFailed",
    "ActivityTaskScheduled",
    "ActivityTaskTimedOut",
    "ChildWorkflowExecutionCanceled",
    "ChildWorkflowExecutionCompleted",
    "ChildWorkflowExecutionFailed",
    "ChildWorkflowExecutionStarted",
    "ChildWorkflowExecutionTerminated",
    "ChildWorkflowExecutionTimedOut",
    "Event",
    "EventDecodeError",
    "ExternalWorkflowExecutionCancelRequested",
    "ExternalWorkflowExecutionSignaled",
    "MarkerRecorded",
    "RequestCancelExternalWorkflowExecutionFailed",
    "RequestCancelExternalWorkflowExecutionInitiated",
    "SignalExternalWorkflowExecutionFailed",
    "SignalExternalWorkflowExecutionInitiated",
    "StartChildWorkflowExecutionFailed",
    "StartChildWorkflowExecutionInitiated",
    "TimerCanceled",
    "TimerFired",
    "TimerStarted",
    "UpsertWorkflowSearchAttributes",
    "WorkflowExecutionCancelRequested",
    "WorkflowExecutionCanceled",
    "WorkflowExecutionCompleted",
    "WorkflowExecutionContinuedAsNew",
    "WorkflowExecutionFailed",
    "WorkflowExecutionSignaled",
    "WorkflowExecutionStarted",
    "WorkflowExecutionTerminated",
    "WorkflowExecutionTimedOut",
    "WorkflowExecutionUpdateAccepted",
    "WorkflowExecutionUpdateAdmitted",
    "WorkflowExecutionUpdateCompleted",
    "WorkflowLogicFlag",
    "WorkflowTaskCompleted",
    "decode_buffered_event",
    "decode_event",
    "decode_packed_event",
    "encode_attributes",
    "encode_event",
    "encode_logic_flags",
    "field_kinds",
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        WorkflowExecutionStarted,
        ActivityTaskCompleted,
        ActivityTaskFailed,
        ActivityTaskTimedOut,
        TimerFired,
        WorkflowExecutionSignaled,
        WorkflowExecutionCancelRequested,
        WorkflowTaskCompleted,
        ActivityTaskScheduled,
        ActivityTaskCanceled,
        TimerStarted,
        TimerCanceled,
        WorkflowExecutionCompleted,
        WorkflowExecutionFailed,
        WorkflowExecutionCanceled,
        WorkflowExecutionContinuedAsNew,
        MarkerRecorded,
        WorkflowExecutionUpdateAdmitted,
        WorkflowExecutionUpdateAccepted,
        WorkflowExecutionUpdateCompleted,
        UpsertWorkflowSearchAttributes,
        WorkflowExecutionTerminated,
        WorkflowExecutionTimedOut,
        StartChildWorkflowExecutionInitiated,
        ChildWorkflowExecutionStarted,
        StartChildWorkflowExecutionFailed,
        *CHILD_CLOSE_TYPES,
        SignalExternalWorkflowExecutionInitiated,
        ExternalWorkflowExecutionSignaled,
        SignalExternalWorkflowExecutionFailed,
        RequestCancelExternalWorkflowExecutionInitiated,
        ExternalWorkflowExecutionCancelRequested,
        RequestCancelExternalWorkflowExecutionFailed,
    )
}

CLOSE_TYPES = frozenset(
    {
        "WorkflowExecutionCompleted",
        "WorkflowExecutionFailed",
        "WorkflowExecutionCanceled",
        "WorkflowExecutionContinuedAsNew",
        "WorkflowExecutionTerminated",
        "WorkflowExecutionTimedOut",
    }
)

#: WorkflowExecutionStarted attributes a start without options leaves at their defaults
#: (0, "", b""): the public history leaves them out then (sdk/client/types.py).
START_OPTION_FIELDS = frozenset({
    "first_execution_run_id", "continued_run_id", "memo",
    "execution_timeout_ms", "run_timeout_ms", "task_timeout_ms", "header",
    "cron_schedule", "first_workflow_task_backoff_ms",
    "parent_workflow_id", "parent_run_id",
})

# Field kinds, read once from the annotations.
_KINDS: dict[type[Event], dict[str, str]] = {}
for _cls in EVENT_TYPES.values():
    _hints = get_type_hints(_cls)
    _KINDS[_cls] = {
        f.name: (
            "int"
            if _hints[f.name] is int
            else "bytes"
            if _hints[f.name] is bytes
            else "str"
            if _hints[f.name] is str
            else "json"
        )
        for f in dataclasses.fields(_cls)
        if f.name not in ("event_id", "timestamp")
    }


#: Per event type, how decode_event rebuilds each attribute from its stream field:
#: (attribute, field name as bytes, conversion), worked out once rather than per event.
_CONVERT: dict[str, Callable[[bytes], Any]] = {
    "int": int, "str": methodcaller("decode"), "bytes": bytes, "json": json.loads,
}
_DECODERS: dict[type[Event], tuple[tuple[str, bytes, Callable[[bytes], Any]], ...]] = {
    cls: tuple((name, name.encode(), _CONVERT[kind]) for name, kind in kinds.items())
    for cls, kinds in _KINDS.items()
}


def field_kinds(event_type: type[Event]) -> dict[str, str]:
    """Each attribute's kind ("int", "str", "bytes" for payloads, "json"): how it is
    written in a stream entry (and rebuilt from a decoded form, sdk/_replayer.py)."""
    return _KINDS[event_type]


class EventDecodeError(ValueError):
    """A history entry that is not a well-formed event."""


#: json.dumps(value, separators=(",", ":")) builds a new encoder on every call (only its
#: default arguments reuse one): the same output from one made once.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def encode_attributes(event_type: type[Event], attrs: dict[str, Any]) -> list[bytes | str]:
    """Flat field/value list for XADD (without id, type and ts, which Lua adds)."""
    out: list[bytes | str] = []
    for name, kind in _KINDS[event_type].items():
        if name not in attrs:
            continue
        value = attrs[name]
        out.append(name)
        if kind == "json":
            out.append(_COMPACT_JSON.encode(value))
        elif kind == "bytes":
            out.append(value)
        else:
            out.append(str(value))
    return out


def encode_event(event: Event) -> dict[str, bytes | str]:
    """All fields of a stream entry, for tests and golden files."""
    fields: dict[str, bytes | str] = {
        "id": str(event.event_id),
        "type": event.type,
        "ts": str(event.timestamp),
    }
    flat = encode_attributes(type(event), event.attributes())
    for i in range(0, len(flat), 2):
        fields[str(flat[i])] = flat[i + 1]
    return fields


def decode_event(fields: dict[bytes, bytes]) -> Event:
    """Rebuild an event from a stream entry's fields."""
    try:
        cls = EVENT_TYPES[fields[b"type"].decode()]
        kwargs: dict[str, Any] = {
            "event_id": int(fields[b"id"]),
            "timestamp": int(fields[b"ts"]),
        }
        get = fields.get
        for name, key, convert in _DECODERS[cls]:
            raw = get(key)
            if raw is not None:
                kwargs[name] = convert(raw)
        return cls(**kwargs)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise EventDecodeError(f"malformed history entry {fields!r}: {exc}") from None


def _netstrings(data: bytes) -> list[bytes]:
    # Every workflow task carries an event packed this way: local names for speed.
    parts: list[bytes] = []
    append, index = parts.append, data.index
    pos, end = 0, len(data)
    while pos < end:
        colon = index(b":", pos)
        start = colon + 1
        pos = start + int(data[pos:colon])
        append(data[start:pos])
    return parts


def _msgpack_parts(data: bytes) -> list[Any]:
    try:
        parts = _unpackb(data, raw=True)
    except Exception as exc:  # msgpack's errors are not all ValueErrors
        raise ValueError(f"malformed packed event: {exc}") from None
    if not isinstance(parts, list):
        raise ValueError("a packed event is an array")
    return parts


def decode_packed_event(data: bytes) -> Event:
    """The one event a workflow task entry carries, for a speculative activation, as
    the Lua `packed_event` wrote it: a MessagePack array (id, type, ts, field, value...;
    first byte 0x90-0x9f or 0xdc/0xdd) or, from a library before it (a rolling deploy
    has both) and on fakeredis, netstrings of the same parts (first byte a digit)."""
    parts = _msgpack_parts(data) if data[:1] >= b"\x90" else _netstrings(data)
    fields = {b"id": parts[0], b"type": parts[1], b"ts": parts[2]}
    fields.update(zip(parts[3::2], parts[4::2], strict=True))
    return decode_event(fields)


def decode_buffered_event(data: bytes, event_id: int) -> Event:
    """An event buffered while a workflow task runs (netstrings: type, ts, fields...).
    It has no number until the task's completion appends it: `event_id` is the one it
    would get if appended now, for a query that applies it to a throwaway state."""
    parts = _netstrings(data)
    fields = {b"id": str(event_id).encode(), b"type": parts[0], b"ts": parts[1]}
    fields.update(zip(parts[2::2], parts[3::2], strict=True))
    return decode_event(fields)
