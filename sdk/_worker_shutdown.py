"""The worker's graceful shutdown as activities see it (temporalio's
`activity.wait_for_worker_shutdown()`, `wait_for_worker_shutdown_sync()` and
`is_worker_shutdown()`): one flag per worker, set when its drain begins (SIGTERM,
`worker.shutdown()`, leaving `async with worker`), waited for from the worker's event
loop (async activities) or from threads (sync activities)."""

from __future__ import annotations

import asyncio
import threading


class WorkerShutdown:
    """A flag set once, that both threads and event loops can wait for."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def wait_sync(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return
            self._waiters.append((loop, future))
        try:
            await future
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
