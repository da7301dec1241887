"""Issue 13's family storm at CI size: scripts/chaos/family_storm.py (full size:
`python -m scripts.chaos run family`, 5 parents x 20 children, several kills)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.chaos import family_check, family_storm
from tests.chaos.marks import SCENARIO

pytestmark = SCENARIO


@pytest.mark.timeout(180)
async def test_family_storm_ends_every_workflow_right(redis_url: str, tmp_path: Path) -> None:
    cfg = family_storm.FamilyConfig(parents=3, children=4, terminated=1, mails=2,
                                    parent_updates=2, parent_signals=2, workers=2,
                                    kill_every=0.5, min_kills=2, delay=0.05, finish=150.0)
    report = await family_storm.run(redis_url, cfg, tmp_path)
    print(report.line())
    assert report.ok, report.figures.details()
    figures = report.figures
    assert report.kills >= 2
    assert figures.workflows == 3 + 3 * 4 + 1
    assert figures.children_by_policy == 4 and figures.orphans == 0
    # The doomed family's 4 children each get an update as their parent is terminated:
    # it completes, or its caller is told the workflow closed first.
    assert figures.updates_once == figures.updates_sent
    assert figures.updates_sent + figures.raced_failed == 3 * 2 + 2 * 4 + 4
    assert figures.mails_delivered == figures.mails_sent == 3 * 2


def test_problems_name_what_is_wrong() -> None:
    ok = [{b"id": b"1", b"type": b"WorkflowExecutionStarted"},
          {b"id": b"2", b"type": b"WorkflowExecutionTerminated"}]
    assert family_check.terminated_problems("c", {b"status": b"TERMINATED"}, ok) == []
    assert "orphaned" in family_check.terminated_problems(
        "c", {b"status": b"RUNNING"}, ok[:1])[0]
    once = [{b"type": kind, b"update_id": b"w-u0"}
            for kind in (family_check.ACCEPTED, family_check.COMPLETED)]
    assert family_check.update_problems("w", once, ["w-u0"], {("w", "w-u0"): "w:0"}) == []
    problems = family_check.update_problems("w", once + once[:1], ["w-u0"],
                                            {("w", "w-u0"): "w:1"})
    assert any("Accepted events" in p for p in problems)
    assert any("got 'w:1'" in p for p in problems)
    raced = {("w", "w-u0"): "WorkflowUpdateFailedError"}
    assert family_check.update_problems("w", once[:1], ["w-u0"], {}, raced) == []
    assert "has WorkflowExecutionUpdateCompleted" in family_check.update_problems(
        "w", once, ["w-u0"], {}, raced)[0]
