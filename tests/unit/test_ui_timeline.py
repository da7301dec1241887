"""The UI's timeline: bars for workflow tasks, activities and timers from a history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sdk.client.types import HistoryEvent
from sdk.ui.timeline import build

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(event_id: int, kind: str, at_ms: int, **attributes: Any) -> HistoryEvent:
    return HistoryEvent(event_id, kind, T0 + timedelta(milliseconds=at_ms), attributes)


HISTORY = [
    event(1, "WorkflowExecutionStarted", 0, input=[3]),
    event(2, "WorkflowTaskCompleted", 10, worker="w1"),
    event(3, "ActivityTaskScheduled", 10, activity_id=1, activity_type="charge"),
    event(4, "ActivityTaskCompleted", 410, activity_id=1, attempt=3, result=None),
    event(5, "WorkflowTaskCompleted", 420, worker="w1"),
    event(6, "TimerStarted", 420, timer_id=1, duration_ms=500),
    event(7, "WorkflowExecutionSignaled", 600, signal_name="picked_up", input=[]),
    event(8, "WorkflowTaskCompleted", 610, worker="w2"),
]


def test_bars_span_from_cause_to_effect_with_retries() -> None:
    timeline = build(HISTORY, now=T0 + timedelta(milliseconds=1000))
    bars = {bar.label: bar for bar in timeline.bars}
    assert list(bars) == ["workflow task 1", "charge #1", "workflow task 2", "timer #1",
                          "workflow task 3"]
    charge = bars["charge #1"]
    assert (charge.state, charge.duration_ms, charge.detail) == ("completed", 400,
                                                                 "attempt 3, 2 retries")
    # A workflow task starts at the first event that woke it (the activity's result).
    assert (bars["workflow task 2"].start_ms, bars["workflow task 2"].duration_ms) == (
        int(T0.timestamp() * 1000) + 410, 10)
    assert bars["workflow task 3"].detail == "worker w2"
    assert [m.label for m in timeline.markers] == ["signal picked_up"]


def test_open_bars_run_to_now_on_an_axis_that_includes_now() -> None:
    timeline = build(HISTORY, now=T0 + timedelta(milliseconds=1000))
    timer = next(bar for bar in timeline.bars if bar.kind == "timer")
    assert (timer.state, timer.end_ms, timer.detail) == ("running", None, "0.5 s")
    assert timeline.end_ms - timeline.start_ms == 1000
    assert timer.x == 42.0
    assert round(timer.x + timer.width, 6) == 100.0
    for bar in timeline.bars:
        assert bar.x >= 0 and bar.x + bar.width <= 100.000001
        assert bar.width > 0  # instant ones included


def test_closed_run_ends_the_axis_at_its_last_event() -> None:
    closed = [*HISTORY, event(9, "TimerFired", 920, timer_id=1),
              event(10, "WorkflowTaskCompleted", 930),
              event(11, "WorkflowExecutionCompleted", 930, result="done")]
    timeline = build(closed, now=T0 + timedelta(days=1))
    assert timeline.end_ms - timeline.start_ms == 930
    assert all(bar.end_ms is not None for bar in timeline.bars)
    assert [m.label for m in timeline.markers] == ["signal picked_up", "Completed"]


def test_empty_history_has_no_bars() -> None:
    timeline = build([], now=T0)
    assert (timeline.bars, timeline.markers) == ([], [])


def test_updates_are_bars_from_acceptance_to_completion() -> None:
    history = [
        event(1, "WorkflowExecutionStarted", 0, input=[]),
        event(2, "WorkflowTaskCompleted", 10, worker="w1"),
        event(3, "WorkflowTaskCompleted", 100, worker="w1"),
        event(4, "WorkflowExecutionUpdateAccepted", 100, update_id="u1", name="add_tip",
              input=[5]),
        event(5, "WorkflowExecutionUpdateAccepted", 100, update_id="u2", name="slow",
              input=[]),
        event(6, "WorkflowExecutionUpdateCompleted", 100, update_id="u1", result=5),
        event(7, "WorkflowTaskCompleted", 300, worker="w1"),
        event(8, "WorkflowExecutionUpdateCompleted", 300, update_id="u2",
              failure={"message": "no"}),
        event(9, "WorkflowTaskCompleted", 400, worker="w1"),
        event(10, "WorkflowExecutionUpdateAccepted", 400, update_id="u3", name="open",
              input=[]),
    ]
    timeline = build(history, now=T0 + timedelta(milliseconds=1000))
    updates = [bar for bar in timeline.bars if bar.kind == "update"]
    assert [(b.label, b.state, b.duration_ms, b.detail) for b in updates] == [
        ("update add_tip", "completed", 0, "id u1"),
        ("update slow", "failed", 200, "id u2"),
        ("update open", "running", None, "id u3"),
    ]
