"""RetryPolicy: how failed activity attempts are retried (on durable timers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine.errors import InvalidArgumentError


@dataclass(frozen=True)
class RetryPolicy:
    initial_interval: timedelta = timedelta(seconds=1)
    """Delay before the first retry."""
    backoff_coefficient: float = 2.0
    """Each retry waits this many times longer than the one before."""
    maximum_interval: timedelta | None = None
    """Cap on the delay between attempts; default 100 x initial_interval."""
    maximum_attempts: int = 0
    """Total attempts allowed, the first included; 0 means unlimited."""
    non_retryable_error_types: Sequence[str] = field(default_factory=tuple)
    """`ApplicationError.type` (or exception class) names that are never retried."""

    def __post_init__(self) -> None:
        if self.initial_interval <= timedelta(0):
            raise InvalidArgumentError("initial_interval must be positive")
        if not math.isfinite(self.backoff_coefficient):
            # (NaN passes `< 1`; the Lua's cjson cannot encode either back.)
            raise InvalidArgumentError("backoff_coefficient must be finite")
        if self.backoff_coefficient < 1:
            raise InvalidArgumentError("backoff_coefficient must be at least 1")
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise InvalidArgumentError("maximum_interval must be at least initial_interval")
        if self.maximum_attempts < 0:
            raise InvalidArgumentError("maximum_attempts must be 0 (unlimited) or more")

    def to_wire(self) -> dict[str, Any]:
        """The JSON form the engine's Lua reads."""
        initial_ms = _ms(self.initial_interval)
        maximum = self.maximum_interval
        return {
            "initial_interval_ms": initial_ms,
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval_ms": _ms(maximum) if maximum is not None else initial_ms * 100,
            "maximum_attempts": self.maximum_attempts,
            "non_retryable_error_types": list(self.non_retryable_error_types),
        }


def _ms(value: timedelta) -> int:
    return max(1, int(value.total_seconds() * 1000))
