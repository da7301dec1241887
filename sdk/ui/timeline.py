"""The compact timeline of a run: one bar per workflow task, activity and timer.

Pure: decoded history events in, bars with positions out (the template draws them as
SVG, whose x/width attributes need no inline style, so the page's CSP can forbid those).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.events import EVENT_TYPES
from sdk.client.types import HistoryEvent

#: Events that end an activity, and the bar's state after each.
_ACTIVITY_END = {
    "ActivityTaskCompleted": "completed",
    "ActivityTaskFailed": "failed",
    "ActivityTaskTimedOut": "timed out",
    "ActivityTaskCanceled": "canceled",
}
_TIMER_END = {"TimerFired": "fired", "TimerCanceled": "canceled"}


def _is_command(kind: str) -> bool:
    """Written by a workflow task (what the code decided), not an input to one."""
    event_type = EVENT_TYPES.get(kind)
    return event_type is not None and event_type.is_command


#: Events that happen at one moment and are drawn as a marker on the workflow row.
_MARKERS = {
    "WorkflowExecutionSignaled",
    "WorkflowExecutionCancelRequested",
    "WorkflowExecutionTerminated",
    "WorkflowExecutionTimedOut",
    "WorkflowExecutionCompleted",
    "WorkflowExecutionFailed",
    "WorkflowExecutionCanceled",
    "WorkflowExecutionContinuedAsNew",
}


@dataclass
class Bar:
    kind: str  # "workflow task", "activity", "timer" or "update"
    label: str
    start_ms: int
    end_ms: int | None  # None: still open
    state: str  # running, completed, failed, fired, ...
    detail: str = ""
    #: Position on the axis, in percent of its width (set by `layout`).
    x: float = 0.0
    width: float = 0.0

    @property
    def duration_ms(self) -> int | None:
        return None if self.end_ms is None else self.end_ms - self.start_ms


@dataclass(frozen=True)
class Marker:
    label: str
    at_ms: int
    x: float


@dataclass(frozen=True)
class Timeline:
    bars: list[Bar]
    markers: list[Marker]
    start_ms: int
    end_ms: int


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def build(events: list[HistoryEvent], now: datetime) -> Timeline:
    """Bars for the run in `events`; open ones (still running) end at `now`."""
    bars: list[Bar] = []
    activities: dict[int, Bar] = {}
    timers: dict[int, Bar] = {}
    updates: dict[str, Bar] = {}
    markers: list[tuple[str, int]] = []
    # A workflow task starts with the first input event after the previous one ended
    # (history has no "task started" event: the inputs are what woke the workflow).
    task_start: int | None = None
    tasks = 0
    for event in events:
        at = _ms(event.timestamp)
        attrs = event.attributes
        kind = event.type
        if kind == "WorkflowTaskCompleted":
            tasks += 1
            start = at if task_start is None else task_start
            worker = str(attrs.get("worker", ""))
            bars.append(Bar("workflow task", f"workflow task {tasks}", start, at, "completed",
                            f"worker {worker}" if worker else ""))
            task_start = None
            continue
        if kind == "ActivityTaskScheduled":
            activity_id = int(attrs.get("activity_id", 0))
            bar = Bar("activity", f"{attrs.get('activity_type', '?')} #{activity_id}", at,
                      None, "running")
            activities[activity_id] = bar
            bars.append(bar)
        elif kind in _ACTIVITY_END:
            bar_or_none = activities.get(int(attrs.get("activity_id", 0)))
            if bar_or_none is not None:
                bar_or_none.end_ms, bar_or_none.state = at, _ACTIVITY_END[kind]
                attempt = int(attrs.get("attempt", 1) or 1)
                bar_or_none.detail = f"attempt {attempt}, {attempt - 1} retries"
        elif kind == "TimerStarted":
            timer_id = int(attrs.get("timer_id", 0))
            bar = Bar("timer", f"timer #{timer_id}", at, None, "running",
                      f"{int(attrs.get('duration_ms', 0)) / 1000:g} s")
            timers[timer_id] = bar
            bars.append(bar)
        elif kind in _TIMER_END:
            bar_or_none = timers.get(int(attrs.get("timer_id", 0)))
            if bar_or_none is not None:
                bar_or_none.end_ms, bar_or_none.state = at, _TIMER_END[kind]
        elif kind == "WorkflowExecutionUpdateAccepted":
            # An update from its acceptance to its completion (a rejected one left no event).
            bar = Bar("update", f"update {attrs.get('name', '?')}", at, None, "running",
                      f"id {attrs.get('update_id', '')}")
            updates[str(attrs.get("update_id", ""))] = bar
            bars.append(bar)
        elif kind == "WorkflowExecutionUpdateCompleted":
            bar_or_none = updates.get(str(attrs.get("update_id", "")))
            if bar_or_none is not None:
                bar_or_none.end_ms = at
                bar_or_none.state = "failed" if attrs.get("failure") else "completed"
        if kind in _MARKERS:
            name = attrs.get("signal_name")
            markers.append((f"signal {name}" if name else kind.removeprefix("WorkflowExecution"),
                            at))
        # Events from outside the workflow (start, results, signals, timers) wake it.
        if not _is_command(kind) and task_start is None:
            task_start = at
    return layout(bars, markers, events, _ms(now))


def layout(
    bars: list[Bar], markers: list[tuple[str, int]], events: list[HistoryEvent], now_ms: int
) -> Timeline:
    """Place bars on one axis from the first event to the last (or now, if open)."""
    if not events:
        return Timeline([], [], now_ms, now_ms)
    start = _ms(events[0].timestamp)
    end = _ms(events[-1].timestamp)
    if any(bar.end_ms is None for bar in bars):
        end = max(end, now_ms)
    span = max(end - start, 1)
    for bar in bars:
        bar_end = bar.end_ms if bar.end_ms is not None else end
        bar.x = 100 * (bar.start_ms - start) / span
        # Instant bars still get a visible sliver.
        bar.width = max(100 * (bar_end - bar.start_ms) / span, 0.4)
        bar.x = min(bar.x, 100 - bar.width)
    placed = [Marker(label, at, 100 * (at - start) / span) for label, at in markers]
    return Timeline(bars, placed, start, end)
