"""Activity-side API: the decorator, `info()` and `heartbeat()` inside activity code."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from engine.codec import MsgpackCodec
from sdk._definitions import decorate, define_activity
from sdk.converter import value_to_wire

__all__ = ["ActivityInfo", "defn", "heartbeat", "info", "is_cancelled"]

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ActivityInfo:
    workflow_id: str
    run_id: str
    activity_id: int
    activity_type: str
    attempt: int
    task_queue: str
    #: Details of the last heartbeat of an earlier attempt (decoded), or None.
    heartbeat_details: Any = None


@dataclass
class ActivityContext:
    info: ActivityInfo
    heartbeat_details: Any = None
    #: `heartbeat_details` encoded by `heartbeat()` (b"" = none): what the worker sends.
    heartbeat_payload: bytes = b""
    heartbeat_pending: bool = False
    cancel_requested: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: The worker's payload codec (encode side), used by `heartbeat()`.
    encode: Callable[[Any], bytes] = field(default=MsgpackCodec().encode)


_context: contextvars.ContextVar[ActivityContext | None] = contextvars.ContextVar(
    "redurable_activity", default=None
)


def _current() -> ActivityContext:
    ctx = _context.get()
    if ctx is None:
        raise RuntimeError("not in an activity: this call is only allowed inside activity code")
    return ctx


@overload
def defn(fn: _F, /) -> _F: ...
@overload
def defn(*, name: str | None = None) -> Callable[[_F], _F]: ...
def defn(fn: _F | None = None, /, *, name: str | None = None) -> _F | Callable[[_F], _F]:
    """Marks an `async def` function as an activity; `name` overrides its wire name."""

    return decorate(fn, lambda f: define_activity(f, name))


def info() -> ActivityInfo:
    return _current().info


def heartbeat(*details: Any) -> None:
    """Report progress. The worker sends heartbeats in batches; a heartbeat keeps
    `heartbeat_timeout` from firing, and its details reach the next attempt."""
    ctx = _current()
    payload = list(details) if details else None
    # Encoded here, in the activity's own code: a value the codec refuses raises
    # PayloadError where the user sees it (it used to raise in the worker's heartbeat
    # loop and stop the whole worker).
    ctx.heartbeat_payload = ctx.encode(value_to_wire(payload)) if payload is not None else b""
    ctx.heartbeat_details = payload
    ctx.heartbeat_pending = True


def is_cancelled() -> bool:
    """True once the workflow no longer wants this activity's result."""
    return _current().cancel_requested
