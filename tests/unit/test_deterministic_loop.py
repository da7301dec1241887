"""engine/loop.py's ready queue: FIFO across callbacks that schedule more, and callbacks
left queued when one raises through the loop (KeyboardInterrupt, SystemExit)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.loop import DeterministicLoop


class _Owner:
    def now_seconds(self) -> float:
        return 0.0

    def start_timer(self, delay: float, handle: Any) -> int:
        return 1

    def cancel_timer(self, seq: int) -> None:
        pass


def _loop() -> DeterministicLoop:
    return DeterministicLoop(_Owner())  # type: ignore[abstract]


def test_callbacks_run_in_fifo_order_with_those_they_schedule_after() -> None:
    loop = _loop()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        loop.call_soon(ran.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(ran.append, "second")
    loop.run_ready()
    assert ran == ["first", "second", "scheduled by first"]
    assert not loop.has_ready()


def test_a_callback_raising_through_the_loop_leaves_the_rest_queued() -> None:
    loop = _loop()
    ran: list[str] = []

    def interrupt() -> None:
        loop.call_soon(ran.append, "scheduled before the interrupt")
        raise KeyboardInterrupt

    loop.call_soon(ran.append, "one")
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, "three")
    with pytest.raises(KeyboardInterrupt):
        loop.run_ready()
    assert ran == ["one"]
    loop.run_ready()
    assert ran == ["one", "three", "scheduled before the interrupt"]


def test_a_cancelled_callback_does_not_run() -> None:
    loop = _loop()
    ran: list[str] = []
    loop.call_soon(ran.append, "one")
    loop.call_soon(ran.append, "two").cancel()
    loop.run_ready()
    assert ran == ["one"]
