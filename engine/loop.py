"""A deterministic asyncio event loop for workflow code.

No I/O and no wall clock: `time()` is the activation's recorded time, `call_later`
becomes a durable timer command, and the ready queue is drained in FIFO order, so the
same history always drives the code through the same steps. asyncio's own Future, Task,
gather and wait run on it unchanged.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")


class TimerOwner(Protocol):
    """The machine that turns `call_later` into durable timers."""

    def now_seconds(self) -> float: ...

    def start_timer(self, delay: float, handle: asyncio.TimerHandle) -> int: ...

    def cancel_timer(self, seq: int) -> None: ...


class DurableTimerHandle(asyncio.TimerHandle):
    """A TimerHandle whose cancel() records a CancelTimer command."""

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: DeterministicLoop,
        context: contextvars.Context | None,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self.seq = 0
        self._owner_loop = loop

    def cancel(self) -> None:
        if not self.cancelled() and self.seq:
            self._owner_loop.owner.cancel_timer(self.seq)
        super().cancel()


class DeterministicLoop(asyncio.AbstractEventLoop):
    def __init__(self, owner: TimerOwner) -> None:
        self.owner = owner
        # A list, not a deque: an empty deque keeps a 624-byte block, in every cached run.
        self._ready: list[asyncio.Handle] = []
        self.errors: list[dict[str, Any]] = []

    # --- scheduling -------------------------------------------------------------------
    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = DurableTimerHandle(self.time() + delay, callback, args, self, context)
        if delay <= 0:
            self._ready.append(handle)
        else:
            handle.seq = self.owner.start_timer(delay, handle)
        return handle

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_later(when - self.time(), callback, *args, context=context)

    def fire(self, handle: asyncio.TimerHandle) -> None:
        """A durable timer fired: run its callback in this activation."""
        if not handle.cancelled():
            self._ready.append(handle)

    def time(self) -> float:
        return self.owner.now_seconds()

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    # --- running ----------------------------------------------------------------------
    def run_ready(self) -> None:
        """Run callbacks until none is ready. Nests inside the worker's real loop."""
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            while self._ready:
                # In FIFO order, as popping one at a time did: callbacks scheduled by
                # this batch go to the next one.
                batch, self._ready = self._ready, []
                done = 0
                try:
                    for handle in batch:
                        done += 1
                        if not handle.cancelled():
                            handle._run()
                except BaseException:  # KeyboardInterrupt/SystemExit: keep the rest
                    self._ready[:0] = batch[done:]
                    raise
        finally:
            asyncio.events._set_running_loop(previous)

    def has_ready(self) -> bool:
        return bool(self._ready)

    # --- what asyncio's Future/Task machinery asks of a loop --------------------------
    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # Unretrieved task exceptions and callback errors: kept for the machine to report.
        self.errors.append(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def get_exception_handler(self) -> None:
        return None

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # cancelled handles are skipped when they come up; nothing to re-heap
