"""`ActivityEnvironment` (temporalio.testing's name): run one activity function outside
a worker, with `activity.info()`, heartbeats and cancellation working as in a worker,
so its logic is unit-tested without a server."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine.codec import MsgpackCodec, PayloadCodec
from sdk import activity as activity_api
from sdk._definitions import _ACTIVITY, ActivityDefinition
from sdk._worker_shutdown import WorkerShutdown

T = TypeVar("T")


def default_info(activity_type: str = "unknown") -> activity_api.ActivityInfo:
    """What `activity.info()` returns in an ActivityEnvironment unless `env.info` is set."""
    return activity_api.ActivityInfo(
        workflow_id="test",
        run_id="test-run",
        activity_id=1,
        activity_type=activity_type,
        attempt=1,
        task_queue="test",
    )


class ActivityEnvironment:
    """Runs activities as a worker would, minus the server:

    - `activity.info()` returns `env.info` (default: `default_info` with the function's
      activity name);
    - `activity.heartbeat(*details)` calls `env.on_heartbeat(*details)` (a no-op unless
      set), after encoding the details with `codec` as a worker does;
    - `env.cancel()` makes `activity.is_cancelled()` true and cancels a running `async`
      activity, whose `run` then raises `asyncio.CancelledError` (unless the activity
      catches it); a plain `def` activity (run in the caller's thread, or in a thread
      of yours) sees it as in a worker's thread pool: `activity.heartbeat()` raises
      `CancelledError` and `activity.wait_for_cancelled_sync()` returns.
    """

    def __init__(self, *, codec: PayloadCodec | None = None) -> None:
        self.info: activity_api.ActivityInfo | None = None
        self.on_heartbeat: Callable[..., None] = lambda *details: None
        self.codec: PayloadCodec = codec or MsgpackCodec()
        self.cancelled = False
        self._contexts: list[activity_api.ActivityContext] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shutdown = WorkerShutdown()

    def worker_shutdown(self) -> None:
        """Begin the worker's graceful shutdown as activities see it (temporalio's
        name): `activity.is_worker_shutdown()` is true, and
        `wait_for_worker_shutdown()` / `wait_for_worker_shutdown_sync()` return."""
        self._shutdown.set()

    def cancel(self) -> None:
        """Cancel the activities running in this environment, and those run after."""
        self.cancelled = True
        for ctx in self._contexts:
            ctx.request_cancel()
        for task in self._tasks:
            task.cancel()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn(*args)` as the body of an activity attempt. An `async def` activity
        returns an awaitable (`await env.run(fn, ...)`); a plain `def` one runs here, in
        the caller's thread, and returns its value."""
        if not callable(fn):
            raise TypeError(f"ActivityEnvironment.run needs a function, got {fn!r}")
        ctx = self._context(fn)
        if inspect.iscoroutinefunction(fn):
            result: Any = self._run_async(fn, args, ctx)
            return result  # type: ignore[no-any-return]  # Awaitable[T] for async fns
        return contextvars.copy_context().run(self._call_sync, fn, args, ctx)

    def _context(self, fn: Callable[..., Any]) -> activity_api.ActivityContext:
        definition = getattr(fn, _ACTIVITY, None)
        name = definition.name if isinstance(definition, ActivityDefinition) else fn.__name__
        ctx = activity_api.ActivityContext(
            self.info or default_info(name),
            encode=self.codec.encode,
            # A plain def runs as a worker runs it in its thread pool: heartbeat()
            # raises once cancelled, wait_for_cancelled_sync() wakes.
            runs_in="async" if inspect.iscoroutinefunction(fn) else "thread",
            on_heartbeat=lambda *details: self.on_heartbeat(*details),
            worker_shutdown=self._shutdown,
        )
        if self.cancelled:
            ctx.request_cancel()
        return ctx

    def _call_sync(
        self, fn: Callable[..., T], args: tuple[Any, ...], ctx: activity_api.ActivityContext
    ) -> T:
        self._contexts.append(ctx)
        activity_api._context.set(ctx)  # in a copied context: nothing to reset
        try:
            return fn(*args)
        finally:
            self._contexts.remove(ctx)

    async def _run_async(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        ctx: activity_api.ActivityContext,
    ) -> T:
        async def attempt() -> T:
            activity_api._context.set(ctx)  # the task runs in a copy of our context
            return await fn(*args)

        task = asyncio.ensure_future(attempt())
        self._contexts.append(ctx)
        self._tasks.add(task)
        if self.cancelled:
            task.cancel()
        try:
            return await task
        finally:
            self._tasks.discard(task)
            self._contexts.remove(ctx)
