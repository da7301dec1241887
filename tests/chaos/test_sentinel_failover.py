"""The primary of a Sentinel deployment killed under load, at CI size
(scripts/chaos/sentinel_failover.py; full size: `python -m scripts.chaos run
sentinel-failover`). Runs on private redis-servers whatever REDURABLE_TEST_URL says."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaos import sentinel_failover
from tests.chaos.marks import PRIVATE_SERVER

pytestmark = PRIVATE_SERVER

CI_SIZE = sentinel_failover.FailoverConfig(clients=3, rounds=1, warmup=0.5, after=0.5)


@pytest.mark.timeout(90)
async def test_replicas_1_loses_no_acknowledged_call(tmp_path: Path) -> None:
    report = await sentinel_failover.run(CI_SIZE, tmp_path)
    print(report.line())
    without, with_replicas = report.modes
    assert with_replicas.durability == "replicas:1"
    assert with_replicas.acknowledged > 0
    assert with_replicas.lost == 0
    assert with_replicas.not_found == 0
    for mode in report.modes:
        assert mode.rounds == 1
        assert mode.duplicated == 0
        assert mode.other_errors == []
    # Without durability the loss is measured, not asserted: it depends on what was in
    # flight at the kill. What was lost shows up (lost, or signals to a lost start).
    assert without.durability is None
    assert report.ok
