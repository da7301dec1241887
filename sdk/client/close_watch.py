"""One pub/sub subscription per client that wakes every `handle.result()` waiter when
its workflow's run closes: no polling, and no connection held per waiter."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from engine.keys import Keys


class CloseWatcher:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._channels = [keys.closed_channel(s) for s in range(keys.shards)]
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def register(self, workflow_id: str) -> asyncio.Future[None]:
        """A future resolved at the next close of `workflow_id`. Subscribed before it
        returns, so a caller that checks the status afterwards cannot miss the close."""
        async with self._lock:
            if self._reader is None or self._reader.done():
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(*self._channels)
                self._reader = asyncio.create_task(self._read(self._pubsub))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[workflow_id].add(future)
        return future

    def unregister(self, workflow_id: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(workflow_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[workflow_id]

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                message: Any = await pubsub.get_message(timeout=None)
                if message is None or message.get("type") != "message":
                    continue
                data = message["data"]
                workflow_id = data.decode() if isinstance(data, bytes) else str(data)
                for future in self._waiters.pop(workflow_id, set()):
                    if not future.done():
                        future.set_result(None)
        except Exception:
            # Connection lost: wake everyone so they re-check (and re-subscribe).
            for waiters in self._waiters.values():
                for future in waiters:
                    if not future.done():
                        future.set_result(None)
            self._waiters.clear()
            raise

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
