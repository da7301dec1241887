"""One activity attempt as a worker runs it: on the event loop (`async def`), in a
thread of the activity executor, or in a process pool (a plain `def`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from engine.codec import PayloadCodec
from engine.errors import ApplicationError, from_failure, to_failure
from engine.task_token import encode_task_token
from sdk import activity as activity_api
from sdk._definitions import ActivityDefinition
from sdk.worker.task_entry import TaskEntry

log = structlog.get_logger("redurable.worker")


@dataclass
class RunningActivity:
    task: TaskEntry
    context: activity_api.ActivityContext
    #: Cancels the attempt (cancel/release), as anyio does: an activity's own shielded
    #: scopes hold it off. Made by new_scope(), not anyio.CancelScope().
    scope: anyio.CancelScope
    releasing: bool = False
    #: When (monotonic) to send the start mark if the attempt is still running.
    mark_at: float = 0.0
    marked: bool = False
    #: The asyncio task running the attempt (ActivityTasks.start).
    runner: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """The attempt is no longer wanted. An async one is cancelled where it awaits;
        a thread cannot be interrupted: it learns it from heartbeat() or is_cancelled(),
        and the worker waits for it to end (so a slot is never freed while it runs)."""
        self.context.request_cancel()
        if self.context.runs_in == "async":
            self.scope.cancel()

    def release(self) -> None:
        """The worker stops: stop waiting for the attempt, its task goes back to the
        queue. A thread or process still running is left to finish; its result is
        dropped by fencing."""
        self.releasing = True
        self.context.request_cancel()
        self.scope.cancel()


#: The event loop backend's own CancelScope class: anyio.CancelScope() looks the backend
#: up (sniffio) and then runs the scope's __init__ twice, several times what making the
#: scope costs (a good part of starting an attempt). Attempts run on asyncio only.
_scope_class: type[anyio.CancelScope] | None = None


def new_scope() -> anyio.CancelScope:
    global _scope_class
    if _scope_class is None:
        _scope_class = type(anyio.CancelScope())
    return _scope_class()


def runs_in(definition: ActivityDefinition, executor: concurrent.futures.Executor) -> str:
    if definition.is_async:
        return "async"
    return "process" if isinstance(executor, concurrent.futures.ProcessPoolExecutor) else "thread"


async def call_activity(
    definition: ActivityDefinition,
    args: list[Any],
    ctx: activity_api.ActivityContext,
    executor: concurrent.futures.Executor,
) -> Any:
    if ctx.runs_in == "thread":
        # The thread sees this task's contextvars: the activity context and the ids
        # bound for structlog.
        loop = asyncio.get_running_loop()
        run = contextvars.copy_context().run
        return await loop.run_in_executor(executor, run, definition.fn, *args)
    if ctx.runs_in == "process":
        outcome = await asyncio.wrap_future(
            executor.submit(_run_in_process, definition.fn, args, ctx.info)
        )
        return _unpack(outcome)
    try:
        return await definition.fn(*args)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # cancelled by us: the attempt's scope or the worker's shutdown
        # The activity's own code raised it (say it awaited a task it had cancelled):
        # an ordinary failure. Escaping, it ended the attempt with no completion and
        # its task stayed in flight, touched and never claimed, for ever.
        raise ApplicationError(
            f"activity raised CancelledError: {exc}", type="CancelledError"
        ) from None


def _run_in_process(
    fn: Callable[..., Any], args: list[Any], info: activity_api.ActivityInfo
) -> tuple[str, Any]:
    """Runs in a worker process of the pool: `activity.info()` and `activity.logger`
    work there; heartbeat() raises (nothing carries it back). An error travels as its
    failure document, so its stack trace and causes survive the trip."""
    ctx = activity_api.ActivityContext(info, runs_in="process")
    token = activity_api._context.set(ctx)
    try:
        return ("result", fn(*args))
    except activity_api.CompleteAsyncError:
        return ("async", None)
    except Exception as exc:
        return ("failure", to_failure(exc))
    finally:
        activity_api._context.reset(token)


def _unpack(outcome: tuple[str, Any]) -> Any:
    kind, value = outcome
    if kind == "async":
        raise activity_api.CompleteAsyncError()
    if kind == "failure":
        raise from_failure(value)
    return value


def attempt_context(
    task: TaskEntry,
    codec: PayloadCodec,
    definition: ActivityDefinition | None,
    executor: concurrent.futures.Executor,
    task_queue: str,
    worker_shutdown: Any,
) -> activity_api.ActivityContext:
    """What `activity.info()` and friends answer inside the attempt `task` starts."""
    details = None
    raw_details = task.fields.get(b"heartbeat_details", b"")
    if raw_details:
        try:
            details = codec.decode(raw_details)
        except ValueError:
            details = None
    workflow_id, run_id = task.get("workflow_id"), task.get("run_id")
    activity_id, attempt = int(task.get("activity_id")), int(task.get("attempt"))
    info = activity_api.ActivityInfo(
        workflow_id=workflow_id,
        run_id=run_id,
        activity_id=activity_id,
        activity_type=task.get("activity_type"),
        attempt=attempt,
        task_queue=task_queue,
        heartbeat_details=details,
        task_token=encode_task_token(workflow_id, run_id, activity_id, attempt),
    )
    where = "async" if definition is None else runs_in(definition, executor)
    return activity_api.ActivityContext(info, encode=codec.encode, runs_in=where,
                                        worker_shutdown=worker_shutdown)


#: The structlog contextvars of the fields bound for an attempt's log lines (LOG_KEYS).
_LOG_VARS: tuple[contextvars.ContextVar[Any], ...] = ()
LOG_KEYS = ("workflow_id", "run_id", "activity", "attempt", "task_queue")


def log_vars() -> tuple[contextvars.ContextVar[Any], ...]:
    """Setting these is binding LOG_KEYS with structlog.contextvars.bind_contextvars,
    without its per-key name formatting and lookups (a few microseconds an attempt)."""
    global _LOG_VARS
    if not _LOG_VARS:
        tokens = structlog.contextvars.bind_contextvars(**dict.fromkeys(LOG_KEYS, ...))
        _LOG_VARS = tuple(token.var for token in tokens.values())
    return _LOG_VARS


def attempt_ended(runner: asyncio.Task[None]) -> None:
    """An attempt's task lets no exception out: one that did is a bug, logged (an
    unretrieved one is only reported when the task is collected)."""
    if not runner.cancelled() and (exc := runner.exception()) is not None:
        log.error("activity_attempt_crashed", error=f"{type(exc).__name__}: {exc}",
                  exc_info=exc)
