"""Cron schedules of workflows (`start_workflow(..., cron_schedule=...)`): parsing and
the next fire time, with the cronsim library (never by hand). Times are UTC, as in
Temporal; an expression has 5 fields, or 6 with seconds first (cronsim's form)."""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from engine.errors import InvalidArgumentError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_cron_schedule(expression: object) -> str:
    """The expression if cronsim can parse it, else InvalidArgumentError saying why."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidArgumentError(f"cron_schedule must be a cron expression, not {expression!r}")
    try:
        CronSim(expression, datetime.now(UTC))
    except (CronSimError, ValueError) as exc:
        raise InvalidArgumentError(f"bad cron_schedule {expression!r}: {exc}") from None
    return expression


def next_fire_ms(expression: str, after_ms: int) -> int:
    """The first cron time strictly after `after_ms` (ms since the epoch, UTC), in ms."""
    after = datetime.fromtimestamp(after_ms / 1000, UTC)
    fire = next(CronSim(expression, after.replace(microsecond=0)))
    # cronsim starts from whole seconds: a time in the same second is not "after".
    while fire.timestamp() * 1000 <= after_ms:
        fire = next(CronSim(expression, fire))
    return round((fire - _EPOCH).total_seconds() * 1000)
