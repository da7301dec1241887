"""Tools for tests of workflows and activities (temporalio.testing's names): replaying
recorded histories, and a worker running in the background of a block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from sdk._replayer import Replayer, WorkflowHistory, WorkflowReplayResult, WorkflowReplayResults
from sdk.client.client import Client
from sdk.worker.worker import Worker

__all__ = [
    "Replayer",
    "WorkflowHistory",
    "WorkflowReplayResult",
    "WorkflowReplayResults",
    "running_worker",
]


@asynccontextmanager
async def running_worker(client: Client, **options: Any) -> AsyncIterator[Worker]:
    """Run a Worker for the duration of the block, then shut it down gracefully."""
    options.setdefault("handle_signals", False)
    worker = Worker(client, **options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.shutdown()
