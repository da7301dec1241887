"""Activity-side API: the decorator, and `info()`, `heartbeat()`, `is_cancelled()`,
`logger` and `raise_complete_async()` inside activity code (async, or a plain `def` run
in the worker's activity executor: a thread pool by default)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, overload

from engine.codec import MsgpackCodec
from engine.errors import CancelledError
from sdk._definitions import decorate, define_activity
from sdk._log import ContextLogger
from sdk._worker_shutdown import WorkerShutdown
from sdk.converter import value_to_wire

__all__ = [
    "ActivityInfo",
    "defn",
    "heartbeat",
    "in_activity",
    "info",
    "is_cancelled",
    "is_worker_shutdown",
    "logger",
    "raise_complete_async",
    "wait_for_cancelled_sync",
    "wait_for_worker_shutdown",
    "wait_for_worker_shutdown_sync",
]

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
    #: Names this attempt for `client.get_async_activity_handle(task_token=...)`
    #: (opaque bytes; see `raise_complete_async`).
    task_token: bytes = b""
    #: True for a local activity (`workflow.execute_local_activity`): it runs inside
    #: its workflow's task, has no task token, and its heartbeats go nowhere.
    is_local: bool = False


class CompleteAsyncError(BaseException):
    """Control flow: raised by `raise_complete_async()`. A BaseException, so that the
    activity's own `except Exception:` does not catch it."""


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
    #: Where the attempt runs: "async" (the worker's event loop), "thread" (a sync
    #: activity in a thread: heartbeat() raises once cancelled), or "process" (a
    #: process pool: no heartbeats, no cancellation; docs/activities.md).
    runs_in: str = "async"
    #: Behind `cancelled`: made when first asked for (most attempts never are, and a
    #: threading.Event was a good part of what starting an attempt cost).
    _cancelled: threading.Event | None = field(default=None, repr=False)
    #: Called with each heartbeat's details (sdk.testing.ActivityEnvironment.on_heartbeat).
    on_heartbeat: Callable[..., None] | None = None
    #: The interceptors' ActivityOutboundInterceptor chain (sdk/interceptor.py), which
    #: `info()` and `heartbeat()` go through; None without interceptors.
    outbound: Any = None
    #: The worker's graceful shutdown, set when it begins (shared by its attempts).
    worker_shutdown: WorkerShutdown = field(default_factory=WorkerShutdown)

    @property
    def cancelled(self) -> threading.Event:
        """Set with `cancel_requested`, for `wait_for_cancelled_sync()` (in a thread,
        while the worker's loop may cancel: hence the lock)."""
        with _CANCELLED_LOCK:
            if self._cancelled is None:
                self._cancelled = threading.Event()
                if self.cancel_requested:
                    self._cancelled.set()
            return self._cancelled

    def request_cancel(self) -> None:
        with _CANCELLED_LOCK:
            self.cancel_requested = True
            if self._cancelled is not None:
                self._cancelled.set()


#: Guards making ActivityContext._cancelled against a cancel requested meanwhile.
_CANCELLED_LOCK = threading.Lock()


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
    """Marks a function (or a method: register the bound method, `service.charge`) as an
    activity; `name` overrides its wire name. An `async def` runs on the worker's event
    loop, a plain `def` in its `activity_executor` (a thread pool by default)."""

    return decorate(fn, lambda f: define_activity(f, name))


def in_activity() -> bool:
    return _context.get() is not None


def info() -> ActivityInfo:
    ctx = _current()
    if ctx.outbound is not None:
        info: ActivityInfo = ctx.outbound.info()
        return info
    return ctx.info


def heartbeat(*details: Any) -> None:
    """Report progress. The worker sends heartbeats in batches; a heartbeat keeps
    `heartbeat_timeout` from firing, and its details reach the next attempt. In a sync
    activity (a thread) it raises `CancelledError` once the attempt is cancelled: the
    thread cannot be interrupted, so this is where it learns it (and `is_cancelled()`)."""
    ctx = _current()
    if ctx.outbound is not None:
        ctx.outbound.heartbeat(*details)  # its root calls send_heartbeat
        return
    send_heartbeat(ctx, details)


def send_heartbeat(ctx: ActivityContext, details: tuple[Any, ...]) -> None:
    """What `heartbeat()` does (without interceptors, or at the end of their chain)."""
    if ctx.runs_in == "process":
        raise RuntimeError(
            "activity.heartbeat() does not reach the worker from a process pool: run "
            "activities that heartbeat in a thread pool or as async def (docs/activities.md)"
        )
    if ctx.cancel_requested and ctx.runs_in == "thread":
        raise CancelledError("activity cancelled")
    payload = list(details) if details else None
    # Encoded here, in the activity's own code: a value the codec refuses raises
    # PayloadError where the user sees it (it used to raise in the worker's heartbeat
    # loop and stop the whole worker).
    ctx.heartbeat_payload = ctx.encode(value_to_wire(payload)) if payload is not None else b""
    ctx.heartbeat_details = payload
    ctx.heartbeat_pending = True
    if ctx.on_heartbeat is not None:
        ctx.on_heartbeat(*details)


def is_cancelled() -> bool:
    """True once the workflow no longer wants this attempt's result (cancelled, timed
    out, or its run closed), as learned from the attempt's last heartbeat."""
    return _current().cancel_requested


def wait_for_cancelled_sync(timeout: float | None = None) -> bool:
    """In a sync activity: block until the attempt is cancelled (True) or `timeout`
    seconds pass (False). The worker learns of a cancel from heartbeats."""
    return _current().cancelled.wait(timeout)


def is_worker_shutdown() -> bool:
    """True once the worker running this attempt began its graceful shutdown (SIGTERM,
    `worker.shutdown()`): a long activity can save its progress (heartbeat details)
    and end, rather than be handed back when the shutdown timeout runs out."""
    return _current().worker_shutdown.is_set()


async def wait_for_worker_shutdown() -> None:
    """Wait until the worker running this attempt begins its graceful shutdown."""
    await _current().worker_shutdown.wait()


def wait_for_worker_shutdown_sync(timeout: float | None = None) -> bool:
    """In a sync activity: block until the worker begins its graceful shutdown (True)
    or `timeout` seconds pass (False)."""
    return _current().worker_shutdown.wait_sync(timeout)


def raise_complete_async() -> NoReturn:
    """End the activity function without completing the activity: something else
    completes it later with `client.get_async_activity_handle(task_token=...)`, using
    `info().task_token`. Its start-to-close and heartbeat timeouts keep running."""
    _current()
    raise CompleteAsyncError()


def _log_fields() -> dict[str, Any] | None:
    ctx = _context.get()
    if ctx is None:
        return {}
    i = ctx.info
    return {
        "workflow_id": i.workflow_id,
        "run_id": i.run_id,
        "activity_id": i.activity_id,
        "activity_type": i.activity_type,
        "attempt": i.attempt,
        "task_queue": i.task_queue,
    }


#: A stdlib `logging.LoggerAdapter` (logger "redurable.activity"): each record carries
#: the activity's workflow_id, run_id, activity_id, activity_type, attempt, task_queue.
logger = ContextLogger("redurable.activity", _log_fields)
