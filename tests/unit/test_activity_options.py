"""The options start_activity records, built once per set of arguments (sdk/workflow.py
_activity_options): the same dict contents as building them every time, and no call
sees what another did to its copy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.activities import ActivityCancellationType
from engine.errors import InvalidArgumentError
from sdk import _activity_options
from sdk._retry import RetryPolicy

TRY = ActivityCancellationType.TRY_CANCEL


def test_same_arguments_same_options_fresh_dict() -> None:
    args = (None, timedelta(seconds=5), None, None, timedelta(seconds=1), TRY)
    first = _activity_options.activity_options(*args)
    assert first == _activity_options.build_activity_options(*args)
    assert first == {"retry": RetryPolicy().to_wire(), "start_to_close_ms": 5000,
                     "heartbeat_ms": 1000}
    first["header"] = {"trace": "abc"}  # as start_activity adds an activity's headers
    second = _activity_options.activity_options(*args)
    assert "header" not in second
    assert second is not first


def test_options_follow_every_argument() -> None:
    policy = RetryPolicy(maximum_attempts=3)
    base = (policy, timedelta(seconds=5), None, None, None, TRY)
    wait = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    assert _activity_options.activity_options(*base)["retry"]["maximum_attempts"] == 3
    assert _activity_options.activity_options(*base[:5], wait)["cancellation_type"] == wait.name
    assert _activity_options.activity_options(None, 2.5, 7, None, None, TRY) == {
        "retry": RetryPolicy().to_wire(), "start_to_close_ms": 2500,
        "schedule_to_close_ms": 7000}


def test_unhashable_policy_is_built_each_time() -> None:
    policy = RetryPolicy(non_retryable_error_types=["Boom"])
    options = _activity_options.activity_options(policy, 1.0, None, None, None, TRY)
    assert options["retry"]["non_retryable_error_types"] == ["Boom"]


def test_invalid_arguments_raise_every_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidArgumentError, match="must not be negative"):
            _activity_options.activity_options(None, -1.0, None, None, None, TRY)
