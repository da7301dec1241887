"""What many integration tests share: a worker on task queue "q" for the block,
waiting for a condition, a workflow id in another shard, a history's event types, a
client with interceptors on a test's connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from sdk import Client, Worker
from sdk.interceptor import ClientInterceptor
from sdk.testing import running_worker


def queue_worker(
    client: Client, defaults: Mapping[str, Any], options: Mapping[str, Any]
) -> AbstractAsyncContextManager[Worker]:
    """`running_worker` with `options`, else `defaults` (a test module's workflows and
    activities), else task queue "q" and a short graceful shutdown (0.3 s: attempts a
    test abandoned may still sleep, and waiting for them only slows the suite)."""
    return running_worker(
        client, **{"task_queue": "q", "graceful_shutdown_timeout": 0.3, **defaults, **options}
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


def other_shard_id(client: Client, near_id: str, stem: str) -> str:
    """An id (`stem`-n) whose shard is not `near_id`'s."""
    for n in range(100):
        candidate = f"{stem}-{n}"
        if client.keys.shard(candidate) != client.keys.shard(near_id):
            return candidate
    raise AssertionError("no id in another shard")


async def event_types(client: Client, wid: str) -> list[str]:
    """The types of the events in the history of `wid`'s current run, in order."""
    return [e.type async for e in client.get_workflow_handle(wid).fetch_history()]


def intercepted(client: Client, *interceptors: ClientInterceptor) -> Client:
    """A client on `client`'s connection and namespace, with `interceptors`."""
    return Client(client.redis, prefix=client.keys.prefix, shards=client.keys.shards,
                  fast=client.fast, interceptors=list(interceptors))
