"""One pub/sub subscription per client that wakes every `handle.result()` waiter when
its workflow's run closes: no polling, and no connection held per waiter. It is a
sharded subscription (`SSUBSCRIBE` to every shard's close channel, on the master serving
each one's slot on a cluster: one connection per master; engine/shard_pubsub.py).

The subscription outlives a server restart, a failover or a slot migration: when a
connection is lost or the server drops a channel (its slot moved), the reader wakes
every waiter (each re-checks its run's status, so a close published while nobody
listened is not missed), subscribes again on fresh connections, retrying until the
server answers, and goes on. It never ends with an error of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

import structlog
from redis.asyncio import Redis

from engine.errors import ServerUnavailableError
from engine.keys import Keys
from engine.reconnect import RetryConfig
from engine.shard_pubsub import ShardSubscription, is_retryable

log = structlog.get_logger("redurable.client")


class CloseWatcher:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        retry: RetryConfig | None = None,
        channels: list[str] | None = None,
    ) -> None:
        """`channels`: other shard channels whose messages name what to wake (the
        update watcher's, sdk/client/update_handle.py); the close channels by default."""
        self._redis = redis
        self._channels = channels or [keys.closed_channel(s) for s in range(keys.shards)]
        self._retry = retry or RetryConfig()
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._reader: asyncio.Task[None] | None = None
        #: Set while subscribed: a waiter registered then cannot miss a close.
        self._subscribed = asyncio.Event()
        #: Set when the reader ended on an error that retrying cannot fix (ACL refuses
        #: SUBSCRIBE): `_error`, raised to registrations.
        self._ended = asyncio.Event()
        self._error: BaseException | None = None
        #: Times the subscription was made again after a lost connection.
        self.resubscribed = 0

    async def register(self, workflow_id: str) -> asyncio.Future[None]:
        """A future resolved at the next close of `workflow_id`, or when the
        subscription was lost (re-check then). Subscribed before it returns, so a caller
        that checks the status afterwards cannot miss the close: while the server is out
        of reach it waits for the subscription, at most the RetryConfig's
        max_elapsed_time_millis (then ServerUnavailableError)."""
        if self._reader is None or self._reader.done():
            self._ended.clear()
            self._error = None
            self._reader = asyncio.create_task(self._read())
        if not self._subscribed.is_set():
            subscribed = asyncio.ensure_future(self._subscribed.wait())
            ended = asyncio.ensure_future(self._ended.wait())
            try:
                await asyncio.wait({subscribed, ended}, return_when=asyncio.FIRST_COMPLETED,
                                   timeout=self._retry.max_elapsed_time_millis / 1000)
            finally:
                subscribed.cancel()
                ended.cancel()
            if self._error is not None:
                raise self._error
            if not self._subscribed.is_set():
                raise ServerUnavailableError(
                    f"waiting for workflow {workflow_id!r} to close: could not subscribe "
                    f"to close notifications for "
                    f"{self._retry.max_elapsed_time_millis / 1000:g} s",
                    maybe_applied=False,
                )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[workflow_id].add(future)
        return future

    def unregister(self, workflow_id: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(workflow_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[workflow_id]

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        self._waiters.clear()

    def _deliver(self, data: bytes) -> None:
        workflow_id = data.decode() if isinstance(data, bytes) else str(data)
        for future in self._waiters.pop(workflow_id, set()):
            if not future.done():
                future.set_result(None)

    async def _read(self) -> None:
        retry = self._retry
        delay = retry.initial_interval_millis / 1000
        # SSUBSCRIBE on the master serving each channel's slot (engine/shard_pubsub.py).
        subscription = ShardSubscription(self._redis, self._channels)
        while True:
            try:
                await subscription.open()
                self._subscribed.set()
                delay = retry.initial_interval_millis / 1000
                await subscription.run(self._deliver)
            except Exception as exc:
                # Closes published from now until subscribed again are not seen: every
                # waiter re-checks its run (and registers again, which waits for the
                # new subscription).
                was_subscribed = self._subscribed.is_set()
                self._subscribed.clear()
                self._wake_all()
                if not is_retryable(exc):
                    self._error = exc
                    self._ended.set()
                    log.error("close_watch_failed", error=str(exc))
                    return
                if was_subscribed:
                    log.warning("close_watch_connection_lost", error=str(exc))
                    self.resubscribed += 1
                await asyncio.sleep(delay)
                delay = min(delay * retry.multiplier, retry.max_interval_millis / 1000)
            finally:
                await subscription.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
