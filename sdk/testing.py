"""Tools for tests of workflows and activities (temporalio.testing's names): replaying
recorded histories, and a worker running in the background of a block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sdk._activity_environment import ActivityEnvironment
from sdk._environment import WorkflowEnvironment
from sdk._replayer import Replayer, WorkflowReplayResult, WorkflowReplayResults
from sdk.client.client import Client
from sdk.client.history import WorkflowHistory
from sdk.worker.worker import Worker

__all__ = [
    "ActivityEnvironment",
    "Replayer",
    "WorkflowEnvironment",
    "WorkflowHistory",
    "WorkflowReplayResult",
    "WorkflowReplayResults",
    "running_worker",
]


@asynccontextmanager
async def running_worker(client: Client, **options: Any) -> AsyncIterator[Worker]:
    """Run a Worker for the duration of the block, then shut it down gracefully. An
    error in the block reaches the caller as itself (not in an ExceptionGroup)."""
    async with Worker(client, **options) as worker:
        yield worker
