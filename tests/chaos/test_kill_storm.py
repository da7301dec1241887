"""Scenario 1 at CI size: the kill storm of scripts/chaos/kill_storm.py (full size:
`python -m scripts.chaos run kill-storm`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaos import kill_storm
from tests.chaos.marks import SCENARIO

pytestmark = SCENARIO


@pytest.mark.timeout(150)
async def test_kill_storm_every_workflow_completes_once(redis_url: str, tmp_path: Path) -> None:
    cfg = kill_storm.StormConfig(workflows=80, delay=0.1, timer=0.3, min_kills=10,
                                 chaos_max=60.0, drain=45.0)
    report = await kill_storm.run(redis_url, cfg, tmp_path)
    print(report.line())
    assert report.verdict.ok, report.verdict.details()
    assert report.verdict.workflows == 80
    assert report.kills >= 10  # the storm did happen
    assert report.verdict.activities == 80 * 5
    assert report.unrecovered == 0
