"""The benchmark report's formatting (scripts/bench/report.py): numbers, latency pairs,
markdown tables, and whether a run's record holds figures or an error."""

from __future__ import annotations

import math
from typing import Any


def f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def pq(d: dict[str, Any] | None, digits: int = 1) -> str:
    """'p50 / p99' of a latency summary."""
    if not d or "p50_ms" not in d:
        return "-"
    return f"{f(d['p50_ms'], digits)} / {f(d['p99_ms'], digits)}"


def ran_ok(r: Any) -> bool:
    return isinstance(r, dict) and "error" not in r


def error_of(r: Any) -> str:
    return str(r.get("error")) if isinstance(r, dict) else "not run"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out
