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

from engine.errors import ApplicationError, from_failure, to_failure
from sdk import activity as activity_api
from sdk._definitions import ActivityDefinition
from sdk.worker.task_entry import TaskEntry


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
