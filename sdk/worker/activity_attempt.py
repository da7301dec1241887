"""One activity attempt as a worker runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine.errors import ApplicationError
from sdk import activity as activity_api
from sdk.worker.task_entry import TaskEntry


@dataclass
class RunningActivity:
    task: TaskEntry
    context: activity_api.ActivityContext
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    releasing: bool = False
    #: When (monotonic) to send the start mark if the attempt is still running.
    mark_at: float = 0.0
    marked: bool = False


async def call_activity(fn: Callable[..., Any], args: list[Any]) -> Any:
    try:
        return await fn(*args)
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
