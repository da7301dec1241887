"""Scenario 3 at CI size: CLIENT KILLs and replies cut after the write, on a private
redis-server (scripts/chaos/connection_faults.py; full size:
`python -m scripts.chaos run connection-faults`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaos import connection_faults
from tests.chaos.marks import PRIVATE_SERVER

pytestmark = PRIVATE_SERVER


@pytest.mark.timeout(150)
async def test_connection_faults_leave_nothing_stuck_or_duplicated(tmp_path: Path) -> None:
    cfg = connection_faults.FaultConfig(
        workflows=60, workers=2, kill_every=0.1, cut_rate=0.01, chaos_max=60.0,
        stuck_after=30.0)
    report = await connection_faults.run(cfg, tmp_path)
    print(report.line())
    assert sum(report.kills.values()) >= 5
    assert report.cuts >= 1
    assert report.stuck_workflows == 0 and report.stuck_entries == 0, report.line()
    assert report.verdict.ok, report.verdict.details()
    assert report.verdict.workflows >= 60
