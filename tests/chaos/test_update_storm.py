"""Issue 13's update storm at CI size: scripts/chaos/update_storm.py (full size:
`python -m scripts.chaos.update_storm`, 1,000 updates from 10 clients, two kills)."""

from __future__ import annotations

import pytest

from scripts.chaos import update_storm
from tests.chaos.marks import SCENARIO

pytestmark = SCENARIO


@pytest.mark.timeout(120)
async def test_update_storm_each_update_applied_once_to_its_caller(redis_url: str) -> None:
    cfg = update_storm.UpdateStormConfig(updates=300, clients=5, kills=1, duration=3.0,
                                         finish=60.0)
    report = await update_storm.run(redis_url, cfg)
    print(report.line())
    assert report.ok, (report.problems, report.verdict.details())
    assert report.kills == 1


def test_problems_name_what_is_wrong() -> None:
    ids = ["u-0", "u-1"]
    assert update_storm._problems({0: 1, 1: 2}, [0, 1], ids, ids, 2) == []
    problems = update_storm._problems({0: 2, 1: 2}, [0, 0], ids, ids[:1], 2)
    assert "1 missing, 1 twice" in problems[0]
    assert any("another update's result" in p for p in problems)
    assert any("completed events" in p for p in problems)
