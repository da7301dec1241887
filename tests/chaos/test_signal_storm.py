"""Scenario 6 at CI size: the signal storm of scripts/chaos/signal_storm.py (full size:
`python -m scripts.chaos.signal_storm`, 10,000 signals and two kills)."""

from __future__ import annotations

import pytest

from scripts.chaos import signal_storm
from tests.chaos.marks import SCENARIO

pytestmark = SCENARIO


@pytest.mark.timeout(120)
async def test_signal_storm_every_signal_applied_once_in_order(redis_url: str) -> None:
    cfg = signal_storm.StormConfig(signals=1500, kills=1, duration=3.0, finish=60.0)
    report = await signal_storm.run(redis_url, cfg)
    print(report.line())
    assert report.ok, (report.problems, report.verdict.details())
    assert report.kills == 1
    assert report.history_signals == 1500


def test_order_problems_name_what_is_wrong() -> None:
    assert signal_storm._order_problems([0, 1, 2], 3) == []
    [problem] = signal_storm._order_problems([0, 2, 1, 1], 4)
    assert "1 missing, 1 duplicates, first out of order at position 1" in problem
