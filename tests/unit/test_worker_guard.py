"""A worker's background loops outlive Redis being away for a moment (sdk/worker/worker.py
`_guard`): on a Redis Cluster that includes redis-py's cluster errors and the TRYAGAIN
a Function call answers while its slot moves. Before, the schedule scan's `TTL
exhausted` (redis-py's cluster client giving up on TRYAGAIN during a slot migration)
ended the worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from redis.exceptions import ClusterError, ResponseError, TryAgainError

from sdk.worker.worker import Worker

pytestmark = pytest.mark.anyio


def _loop(*errors: BaseException) -> tuple[Callable[[], Awaitable[None]], list[int]]:
    """A loop that fails with `errors` in turn, then returns; and its run count."""
    left, runs = list(errors), [0]

    async def scan_loop() -> None:
        runs[0] += 1
        if left:
            raise left.pop(0)

    return scan_loop, runs


@pytest.mark.parametrize("error", [
    ClusterError("TTL exhausted."),
    TryAgainError("the slot of {3} is moving"),
    ResponseError("TRYAGAIN the slot of {3} is moving (ERR ...)"),  # engine/resp.py's
    # A script past its time limit holds the server (redis-py has no class for it).
    ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL ..."),
    ResponseError("Command # 1 (TIME) of pipeline caused error: ('BUSY Redis is busy ...',)"),
    ConnectionError("lost"),
])
async def test_a_loop_goes_on_after_a_transient_error(
    error: BaseException, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_pause(_: float) -> None:
        return None

    monkeypatch.setattr("sdk.worker.worker.anyio.sleep", no_pause)
    worker = SimpleNamespace(_plumbing=SimpleNamespace(stopping=False))
    loop, runs = _loop(error)
    await Worker._guard(worker, loop)  # type: ignore[arg-type]
    assert runs == [2]


async def test_a_loop_stops_on_an_error_that_is_not_transient() -> None:
    worker = SimpleNamespace(_plumbing=SimpleNamespace(stopping=False))
    with pytest.raises(ResponseError, match="unknown command"):
        await Worker._guard(worker, _loop(ResponseError("ERR unknown command"))[0])  # type: ignore[arg-type]
