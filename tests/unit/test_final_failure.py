"""engine.activities.final_failure: whether a failed attempt is its activity's last, as
the engine's Lua (retry_delay in engine/lua/00_common.lua) decides it, so that a worker
takes a one-write step only for a failure that queues a workflow task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.activities import CANCELLED_FAILURE, PendingActivity, final_failure
from sdk import RetryPolicy

PAYLOAD = b'{"message":"x","type":"Boom","non_retryable":false}'


def _pending(policy: RetryPolicy | None = None, *, cancel_requested: bool = False,
             **options: Any) -> PendingActivity:
    loop = asyncio.new_event_loop()
    try:
        future: asyncio.Future[Any] = loop.create_future()
    finally:
        loop.close()
    wire = {"retry": (policy or RetryPolicy()).to_wire(), **options}
    return PendingActivity(future, "act", cancel_requested=cancel_requested, options=wire)


def _failure(err_type: str = "Boom", non_retryable: bool = False) -> dict[str, Any]:
    return {"message": "x", "type": err_type, "non_retryable": non_retryable}


@pytest.mark.parametrize(("pending", "attempt", "failure", "final"), [
    (_pending(), 1, _failure(non_retryable=True), True),
    (_pending(), 7, _failure(), False),  # unlimited attempts
    (_pending(RetryPolicy(maximum_attempts=3)), 2, _failure(), False),
    (_pending(RetryPolicy(maximum_attempts=3)), 3, _failure(), True),
    (_pending(RetryPolicy(non_retryable_error_types=["Boom"])), 1, _failure(), True),
    (_pending(RetryPolicy(non_retryable_error_types=["Other"])), 1, _failure(), False),
    # Only the server's clock can tell whether the next attempt fits the deadline.
    (_pending(schedule_to_close_ms=1), 1, _failure(), False),
    (_pending(cancel_requested=True), 1, _failure(), True),
])
def test_final_or_not(pending: PendingActivity, attempt: int, failure: dict[str, Any],
                      final: bool) -> None:
    assert final_failure(pending, attempt, PAYLOAD, failure) == (PAYLOAD if final else None)


def test_a_cancelled_attempt_records_the_cancellation() -> None:
    """The worker stopped it at the workflow's request: the server records its own
    cancellation failure, whatever the attempt's CancelledError said."""
    pending = _pending(cancel_requested=True)
    assert final_failure(pending, 2, PAYLOAD, _failure("CancelledError")) == CANCELLED_FAILURE
