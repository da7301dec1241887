"""Clients through server restarts at CI size (scripts/chaos/client_outage.py; full
size: `python -m scripts.chaos run client-outage`). Runs on a private redis-server
whatever REDURABLE_TEST_URL says: it kills the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaos import client_outage
from tests.chaos.marks import PRIVATE_SERVER

pytestmark = PRIVATE_SERVER

CI_SIZE = client_outage.OutageConfig(
    clients=2, restarts=3, restart_every=0.8, down_for=0.5, short_retry_ms=200)


@pytest.mark.timeout(60)
async def test_calls_through_restarts_succeed_once_or_fail_clearly(tmp_path: Path) -> None:
    report = await client_outage.run(CI_SIZE, tmp_path)
    print(report.line())
    assert report.restarts == 3
    assert report.interrupted > 0  # the outages did catch calls in flight
    assert report.recovered > 0
    assert report.default_retry_failures == 0
    assert report.failed_clear > 0  # the short-retry client's calls met the outage
    assert report.failed_other == []
    assert report.duplicated == 0
    assert report.lost == 0
