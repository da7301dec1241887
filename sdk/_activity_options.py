"""The options an activity's ActivityTaskScheduled records, built once per set of
arguments (workflow code passes the same few again and again), and the duration
checks that workflow code's calls share."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.activities import ActivityCancellationType
from engine.errors import InvalidArgumentError
from sdk._retry import RetryPolicy


def seconds(value: timedelta | float | None, what: str) -> float | None:
    """A duration given as a timedelta or a number of seconds, checked."""
    if value is None:
        return None
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if total < 0:
        raise InvalidArgumentError(f"{what} must not be negative")
    return total


def ms(value: timedelta | float | None, what: str) -> int | None:
    total = seconds(value, what)
    return None if total is None else max(1, int(total * 1000))


#: Options start_activity built, by its arguments: workflow code passes the same few
#: again and again, and building them (RetryPolicy.to_wire, the ms conversions) was ~3%
#: of a step's worker CPU. Shared dicts: nothing changes an options dict once built.
_OPTIONS: dict[tuple[Any, ...], dict[str, Any]] = {}
_OPTIONS_KEPT = 256


def activity_options(*args: Any) -> dict[str, Any]:
    """build_activity_options(*args), a shallow copy of the one built before for the
    same arguments (a RetryPolicy whose fields cannot be hashed: built every time)."""
    try:
        cached = _OPTIONS.get(args)
    except TypeError:  # e.g. non_retryable_error_types given as a list
        return build_activity_options(*args)
    if cached is None:
        if len(_OPTIONS) >= _OPTIONS_KEPT:
            _OPTIONS.clear()
        cached = _OPTIONS[args] = build_activity_options(*args)
    return dict(cached)


def build_activity_options(
    retry_policy: RetryPolicy | None,
    start_to_close_timeout: timedelta | None,
    schedule_to_close_timeout: timedelta | None,
    schedule_to_start_timeout: timedelta | None,
    heartbeat_timeout: timedelta | None,
    cancellation_type: ActivityCancellationType,
) -> dict[str, Any]:
    """The options an ActivityTaskScheduled records (its headers apart)."""
    options: dict[str, Any] = {"retry": (retry_policy or RetryPolicy()).to_wire()}
    for key, value, what in (
        ("start_to_close_ms", start_to_close_timeout, "start_to_close_timeout"),
        ("schedule_to_close_ms", schedule_to_close_timeout, "schedule_to_close_timeout"),
        # Each attempt must start within it (a worker took its task), else the activity
        # fails with ActivityTimeoutError "schedule_to_start", not retried.
        ("schedule_to_start_ms", schedule_to_start_timeout, "schedule_to_start_timeout"),
        ("heartbeat_ms", heartbeat_timeout, "heartbeat_timeout"),
    ):
        value_ms = ms(value, what)
        if value_ms is not None:
            options[key] = value_ms
    cancellation_type = ActivityCancellationType(cancellation_type)
    if cancellation_type != ActivityCancellationType.TRY_CANCEL:
        # Only when not the default, so the recorded options stay as they were. The
        # engine keeps a WAIT_CANCELLATION_COMPLETED activity until its attempt ends.
        options["cancellation_type"] = cancellation_type.name
    return options
