"""Activity retries and timeouts end to end, on fakeredis and on a real server (the
`client` fixture): backoff, maximum interval and attempts, non-retryable errors,
describe while retrying, start-to-close, heartbeat and schedule-to-close timeouts."""

from __future__ import annotations

import itertools
import time

import anyio
import pytest

from sdk import (
    Client,
)
from tests.integration.feature_workflows import (
    CALLS,
    CallActivity,
    call_activity,
    fresh_records,  # noqa: F401 (autouse)
    worker,
)
from tests.integration.helpers import eventually

pytestmark = pytest.mark.anyio


# --- retries ----------------------------------------------------------------------------


async def test_retry_with_exponential_backoff(client: Client) -> None:
    out = await call_activity(client, "retry-backoff", "flaky", 3, initial_ms=100, backoff=2.0)
    assert out == {"result": 4}
    calls = CALLS["retry-backoff"]
    assert [attempt for attempt, _, _ in calls] == [1, 2, 3, 4]
    delays = [b[1] - a[1] for a, b in itertools.pairwise(calls)]
    # 100, 200, 400 ms (timers fire on a 50 ms tick): each at least its interval, growing.
    for delay, expected in zip(delays, (0.1, 0.2, 0.4), strict=True):
        assert delay >= expected * 0.9, delays
    assert delays[0] < delays[1] < delays[2], delays


async def test_retry_maximum_interval_caps_the_backoff(client: Client) -> None:
    out = await call_activity(
        client, "retry-capped", "flaky", 3, initial_ms=100, backoff=10.0, max_interval_ms=150
    )
    assert out == {"result": 4}
    calls = CALLS["retry-capped"]
    delays = [b[1] - a[1] for a, b in itertools.pairwise(calls)]
    # 100 ms, then 1 s and 10 s capped at 150 ms.
    assert delays[0] >= 0.09, delays
    assert all(0.13 <= d < 0.6 for d in delays[1:]), delays


async def test_retry_maximum_attempts(client: Client) -> None:
    out = await call_activity(client, "retry-max", "flaky", 99, max_attempts=3)
    assert out["error"] == "ActivityError"
    assert out["attempt"] == 3
    assert out["cause"] == "ApplicationError"
    assert out["message"] == "boom #3"
    assert len(CALLS["retry-max"]) == 3


async def test_non_retryable_error_types(client: Client) -> None:
    out = await call_activity(
        client, "retry-nonretryable-type", "flaky", 99, "Fatal", non_retryable=["Fatal"]
    )
    assert out["attempt"] == 1
    assert out["error_type"] == "Fatal"
    assert len(CALLS["retry-nonretryable-type"]) == 1


async def test_non_retryable_exception_class_name(client: Client) -> None:
    out = await call_activity(
        client, "retry-valueerror", "raise_value_error", non_retryable=["ValueError"]
    )
    assert out["attempt"] == 1
    assert out["error_type"] == "ValueError"
    assert "not a good value" in out["message"]
    assert len(CALLS["retry-valueerror"]) == 1


async def test_application_error_non_retryable(client: Client) -> None:
    out = await call_activity(client, "retry-flagged", "flaky", 99, None, True)
    assert out["attempt"] == 1
    assert out["cause"] == "ApplicationError"
    assert len(CALLS["retry-flagged"]) == 1


async def test_describe_shows_pending_activity_while_retrying(client: Client) -> None:
    async with worker(client):
        handle = await client.start_workflow(
            CallActivity.run,
            "flaky",
            [2],
            {"initial_ms": 300, "start_to_close_ms": 5000},
            id="retry-describe",
            task_queue="q",
        )
        seen = []

        async def retrying() -> bool:
            desc = await handle.describe()
            seen.extend(desc.pending_activities)
            return any(p.attempt >= 2 and p.last_failure for p in desc.pending_activities)

        await eventually(retrying)
        pending = next(p for p in seen if p.attempt >= 2 and p.last_failure)
        assert pending.activity_id == 1
        assert pending.activity_type == "flaky"
        assert pending.last_failure is not None
        assert pending.last_failure["message"].startswith("boom #")
        assert pending.state in ("BACKOFF", "SCHEDULED", "STARTED")
        assert pending.scheduled_time is not None
        with anyio.fail_after(10):
            assert await handle.result() == {"result": 3}
        assert (await handle.describe()).pending_activities == []


# --- timeouts ---------------------------------------------------------------------------


async def test_start_to_close_timeout(client: Client) -> None:
    out = await call_activity(
        client, "timeout-stc", "sleeper", 3.0, start_to_close_ms=200, max_attempts=2
    )
    assert out["error"] == "ActivityError"
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "start_to_close"
    assert out["attempt"] == 2
    assert [a for a, _, _ in CALLS["timeout-stc"]] == [1, 2]  # timed out, then retried


async def test_heartbeat_timeout_and_details_reach_next_attempt(client: Client) -> None:
    out = await call_activity(
        client, "timeout-hb", "checkpointed", heartbeat_ms=500, start_to_close_ms=10000
    )
    assert out == {"result": ["checkpoint", 7]}
    calls = CALLS["timeout-hb"]
    assert [a for a, _, _ in calls] == [1, 2]
    assert calls[0][2] is None
    assert calls[1][2] == ["checkpoint", 7]


async def test_heartbeat_timeout_final(client: Client) -> None:
    out = await call_activity(
        client, "timeout-hb-final", "checkpointed", heartbeat_ms=300, max_attempts=1
    )
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "heartbeat"


async def test_schedule_to_close_timeout(client: Client) -> None:
    started = time.monotonic()
    out = await call_activity(client, "timeout-s2c", "sleeper", 5.0, schedule_to_close_ms=300)
    assert out["cause"] == "ActivityTimeoutError"
    assert out["timeout_type"] == "schedule_to_close"
    assert out["attempt"] == 1
    assert time.monotonic() - started < 4


async def test_schedule_to_close_stops_retries(client: Client) -> None:
    out = await call_activity(
        client, "timeout-s2c-retry", "flaky", 99, schedule_to_close_ms=400, initial_ms=100
    )
    assert out["error"] == "ActivityError"
    assert 1 < len(CALLS["timeout-s2c-retry"]) < 5
