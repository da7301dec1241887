"""The chaos suite's shared checker (scripts/chaos/checker.py) on hand-made histories
(fakeredis): it must pass a good workflow and name every kind of breakage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from engine.codec import MsgpackCodec
from engine.keys import Keys
from scripts.chaos import checker, ledger

pytestmark = pytest.mark.anyio

codec = MsgpackCodec()
keys = Keys("tcheck", 4)


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    r = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield r
    await r.aclose()


def good_events(result: Any) -> list[dict[str, Any]]:
    return [
        {"id": 1, "type": "WorkflowExecutionStarted"},
        {"id": 2, "type": "WorkflowTaskCompleted"},
        {"id": 3, "type": "ActivityTaskScheduled", "activity_id": 1},
        {"id": 4, "type": "ActivityTaskCompleted", "activity_id": 1},
        {"id": 5, "type": "WorkflowTaskCompleted"},
        {"id": 6, "type": "WorkflowExecutionCompleted", "result": codec.encode(result)},
    ]


async def put(redis: Any, wf_id: str, events: list[dict[str, Any]], *, status: str = "COMPLETED",
              next_event_id: int | None = None) -> None:
    for fields in events:
        await redis.xadd(keys.history(wf_id), fields)
    await redis.hset(keys.workflow(wf_id), mapping={
        "status": status,
        "next_event_id": len(events) + 1 if next_event_id is None else next_event_id,
    })


async def test_a_good_workflow_passes(redis: Any) -> None:
    await put(redis, "ok", good_events(42))
    verdict = await checker.check(redis, keys, codec, {"ok": 42})
    assert verdict.ok, verdict.details()
    assert (verdict.workflows, verdict.completed_right, verdict.activities) == (1, 1, 1)


async def test_every_breakage_is_named(redis: Any) -> None:
    gap = good_events(1)
    del gap[2]  # ids 1,2,4,5,6
    dup = good_events(2)
    dup.insert(2, dict(dup[1]))  # id 2 twice
    twice = good_events(5)
    twice.insert(5, dict(twice[5], id=6))
    for i, e in enumerate(twice):
        e["id"] = i + 1
    await put(redis, "gap", gap, next_event_id=7)
    await put(redis, "dup", dup)
    await put(redis, "disagrees", good_events(3), next_event_id=5)
    await put(redis, "wrong", good_events(99))
    await put(redis, "status", good_events(4), status="RUNNING")
    await put(redis, "twice", twice)
    await put(redis, "open", good_events(6)[:4], status="RUNNING")
    expected = {"gap": 1, "dup": 2, "disagrees": 3, "wrong": 4, "status": 4, "twice": 5,
                "open": 6, "gone": 7}
    verdict = await checker.check(redis, keys, codec, expected)
    text = "\n".join(verdict.problems)
    assert verdict.lost == ["gone"]
    assert verdict.completed_right == 0 and not verdict.ok
    assert "gap: event ids are 1..2,4..6, not 1..5" in text
    assert "dup: event ids are 1..2,2..6, not 1..7" in text
    assert "disagrees: state next_event_id 5 disagrees with 6 events" in text
    assert "wrong: result 99, expected 4" in text
    assert "status: state status b'RUNNING' but history closed" in text
    assert "twice: closing events" in text
    assert "open: closing events []" in text


async def test_maybe_started_is_checked_only_if_it_exists(redis: Any) -> None:
    await put(redis, "maybe-here", good_events(8))
    verdict = await checker.check(redis, keys, codec, {}, maybe_started={"maybe-here": 9,
                                                                        "maybe-gone": 1})
    assert verdict.workflows == 1 and not verdict.lost
    assert verdict.problems == ["maybe-here: result 8, expected 9"]


async def test_ledger_counts_duplicate_and_missing_runs(redis: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = ledger.create(tmp_path / "ledger.sqlite")
    monkeypatch.setenv(ledger.ENV, str(db))
    monkeypatch.setattr(ledger, "_connection", None)
    for phase in ("start", "done", "start", "done", "start"):  # 2 full runs, 1 cut short
        ledger.record("twice", 1, "step", 1, phase)
    await put(redis, "twice", good_events(1))
    await put(redis, "never", good_events(2))
    verdict = await checker.check(redis, keys, codec, {"twice": 1, "never": 2}, ledger=db)
    assert verdict.duplicate_activity_runs == 1
    assert verdict.interrupted_activity_runs == 1
    assert verdict.problems == ["never: activity 1 completed with no run in the ledger"]
