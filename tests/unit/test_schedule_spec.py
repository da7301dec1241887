"""Schedule specs -> fire times, and the overlap policies' decisions (pure code:
engine/schedule_spec.py, engine/schedule_policy.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import InvalidArgumentError
from engine.schedule_policy import Manual, ScheduleRecord, decide, workflow_id_of
from engine.schedule_spec import (
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    WireSpec,
    from_ms,
    to_ms,
)

Overlap = ScheduleOverlapPolicy


def ms(text: str) -> int:
    return to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


def wire(spec: ScheduleSpec) -> WireSpec:
    return WireSpec.parse(spec.to_wire())


def test_interval_aligned_to_epoch_plus_offset() -> None:
    spec = wire(ScheduleSpec(intervals=[ScheduleIntervalSpec(
        every=timedelta(minutes=5), offset=timedelta(minutes=1))]))
    assert spec.next_after(ms("2026-01-01T10:02:30")) == ms("2026-01-01T10:06:00")
    assert spec.next_after(ms("2026-01-01T10:06:00")) == ms("2026-01-01T10:11:00")


def test_cron_in_a_time_zone() -> None:
    spec = wire(ScheduleSpec(cron_expressions=["0 3 * * *"], time_zone_name="Europe/Paris"))
    # 03:00 in Paris in January is 02:00 UTC.
    assert spec.next_after(ms("2026-01-01T00:00:00")) == ms("2026-01-01T02:00:00")
    # ... and 01:00 UTC in July (summer time).
    assert spec.next_after(ms("2026-07-01T00:00:00")) == ms("2026-07-01T01:00:00")


def test_union_of_cron_and_intervals_takes_the_earliest() -> None:
    spec = wire(ScheduleSpec(cron_expressions=["30 * * * *"],
                             intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]))
    times = spec.times_between(ms("2026-01-01T10:10:00"), ms("2026-01-01T12:00:00"), 10)
    assert [from_ms(t).strftime("%H:%M") for t in times] == ["10:30", "11:00", "11:30", "12:00"]


def test_calendar_spec_is_a_cron_with_seconds() -> None:
    cal = ScheduleCalendarSpec(hour=[ScheduleRange(9)], minute=[ScheduleRange(0, 30, 15)],
                               day_of_week=[ScheduleRange(1, 5)])
    assert cal.cron() == "0 0-30/15 9 * * 1-5"
    spec = wire(ScheduleSpec(calendars=[cal]))
    # 2026-01-03 is a Saturday: the next match is Monday the 5th at 09:00.
    assert spec.next_after(ms("2026-01-02T09:30:00")) == ms("2026-01-05T09:00:00")
    # describe() gives it back as the calendar it was (not as a cron expression, whose
    # day rule differs).
    public = spec.public()
    assert public.cron_expressions == [] and [c.cron() for c in public.calendars] == [cal.cron()]
    assert public.calendars[0].minute == [ScheduleRange(0, 30, 15)]


def test_calendar_needs_both_day_of_month_and_day_of_week() -> None:
    # Friday the 13th, at noon. Cron would fire on every 13th and every Friday;
    # Temporal (and we) only on days that are both.
    cal = ScheduleCalendarSpec(hour=[ScheduleRange(12)], day_of_month=[ScheduleRange(13)],
                               day_of_week=[ScheduleRange(5)])
    spec = wire(ScheduleSpec(calendars=[cal]))
    times = spec.times_between(ms("2026-01-01T00:00:00"), ms("2026-12-31T00:00:00"), 10)
    assert [from_ms(t).date().isoformat() for t in times] == [
        "2026-02-13", "2026-03-13", "2026-11-13"]
    assert all(from_ms(t).hour == 12 for t in times)
    # A cron expression keeps cron's rule (either day matches).
    cron = wire(ScheduleSpec(cron_expressions=["0 12 13 * 5"]))
    assert cron.next_after(ms("2026-01-01T00:00:00")) == ms("2026-01-02T12:00:00")


def test_calendar_day_rule_in_a_time_zone_and_with_many_times_a_day() -> None:
    # Every 10 minutes of the 1st of a month that is a Sunday (7 is Sunday too), in
    # New York: 2026-02-01 and 2026-03-01 are Sundays.
    cal = ScheduleCalendarSpec(minute=[ScheduleRange(0, 59, 10)], hour=[ScheduleRange(0, 23)],
                               day_of_month=[ScheduleRange(1)], day_of_week=[ScheduleRange(7)])
    spec = wire(ScheduleSpec(calendars=[cal], time_zone_name="America/New_York"))
    first = spec.next_after(ms("2026-01-02T00:00:00"))
    assert first == ms("2026-02-01T05:00:00")  # midnight in New York
    day = spec.times_between(ms("2026-01-02T00:00:00"), ms("2026-02-02T05:00:00"), 1000)
    assert len(day) == 24 * 6
    assert spec.next_after(day[-1]) == ms("2026-03-01T05:00:00")


def test_calendar_that_never_matches_has_no_time() -> None:
    # The 31st of February never comes, and neither does a day both the 30th and
    # ... any day (in February).
    cal = ScheduleCalendarSpec(day_of_month=[ScheduleRange(30, 31)],
                               month=[ScheduleRange(2)], day_of_week=[ScheduleRange(1)])
    assert wire(ScheduleSpec(calendars=[cal])).next_after(ms("2026-01-01T00:00:00")) is None


def test_start_and_end_bound_the_times() -> None:
    spec = wire(ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=10))],
        start_at=datetime(2026, 1, 1, 0, 1, 5, tzinfo=UTC),
        end_at=datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)))
    times = spec.times_between(0, ms("2027-01-01T00:00:00"), 10)
    assert [from_ms(t).second for t in times] == [10, 20, 30]


def test_past_end_at_there_is_no_next_time() -> None:
    spec = wire(ScheduleSpec(cron_expressions=["0 3 * * *"],
                             end_at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert spec.next_after(ms("2026-01-01T00:00:00")) is None


def test_jitter_is_stable_and_below_the_bound() -> None:
    spec = wire(ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))],
                             jitter=timedelta(seconds=30)))
    delays = [spec.jitter_of("s", t) for t in range(0, 60_000 * 50, 60_000)]
    assert all(0 <= d < 30_000 for d in delays)
    assert len(set(delays)) > 1
    assert delays == [spec.jitter_of("s", t) for t in range(0, 60_000 * 50, 60_000)]


@pytest.mark.parametrize("spec", [
    ScheduleSpec(cron_expressions=["not a cron"]),
    ScheduleSpec(cron_expressions=["0 0 30 2 *"]),  # February 30th never comes
    ScheduleSpec(cron_expressions=["0 3 * * *"], time_zone_name="Mars/Olympus"),
    ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(0))]),
    ScheduleSpec(start_at=datetime(2026, 1, 1)),  # naive
])
def test_bad_specs_are_refused(spec: ScheduleSpec) -> None:
    with pytest.raises(InvalidArgumentError):
        spec.to_wire()


def test_workflow_id_appends_the_fire_time_in_rfc3339() -> None:
    assert workflow_id_of("report", ms("2026-01-01T03:00:00")) == "report-2026-01-01T03:00:00Z"


# --- the decisions ------------------------------------------------------------------
EVERY_10S = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=10))])
T0 = ms("2026-01-01T00:00:00")


def record(overlap: Overlap = Overlap.SKIP, *, next_ms: int | None = T0, running: bool = False,
           buffer: list[int] | None = None, manual: list[Manual] | None = None,
           catchup: timedelta = timedelta(days=365), paused: bool = False) -> ScheduleRecord:
    fields: dict[bytes, bytes] = {
        b"spec": EVERY_10S.to_wire().encode(),
        b"policy": SchedulePolicy(overlap, catchup).to_wire().encode(),
        b"action": json.dumps({"workflow": "W", "id": "w", "task_queue": "q"}).encode(),
        b"paused": b"1" if paused else b"0",
        b"next_ms": str(next_ms or "").encode(), b"due_ms": str(next_ms or "").encode(),
        b"seq": b"3", b"version": b"1",
        b"buffer": json.dumps(buffer or []).encode(),
        b"manual": json.dumps([m.wire() for m in manual or []]).encode(),
        b"running": json.dumps([["w-prev", "r1"]] if running else []).encode(),
    }
    return ScheduleRecord.parse("sched", fields)


def test_nothing_due_does_nothing() -> None:
    step = decide(record(), T0 - 1, set())
    assert step.start is None and not step.fired


def test_a_due_fire_starts_and_moves_to_the_next_time() -> None:
    step = decide(record(), T0 + 5, set())
    assert step.start == T0
    assert step.fields["next_ms"] == str(T0 + 10_000)


def test_paused_takes_no_spec_fire_but_takes_a_trigger() -> None:
    assert decide(record(paused=True), T0 + 5, set()).start is None
    step = decide(record(paused=True, manual=[Manual(None, at=T0 + 3)]), T0 + 5, set())
    assert step.start == T0 + 3
    assert json.loads(step.fields["manual"]) == []


@pytest.mark.parametrize(("overlap", "start", "skipped", "buffer", "cancel", "terminate"), [
    (Overlap.SKIP, None, 1, None, False, False),
    (Overlap.BUFFER_ONE, None, 0, [T0], False, False),
    (Overlap.BUFFER_ALL, None, 0, [T0], False, False),
    (Overlap.CANCEL_OTHER, None, 0, [T0], True, False),
    (Overlap.TERMINATE_OTHER, T0, 0, None, False, True),
    (Overlap.ALLOW_ALL, T0, 0, None, False, False),
])
def test_overlap_policies_while_one_runs(overlap: Overlap, start: int | None, skipped: int,
                                         buffer: list[int] | None, cancel: bool,
                                         terminate: bool) -> None:
    step = decide(record(overlap, running=True), T0 + 5, set())
    assert step.start == start
    assert step.counters.get("skipped", 0) == skipped
    assert (json.loads(step.fields["buffer"]) if "buffer" in step.fields else None) == buffer
    assert bool(step.cancel) is cancel
    assert bool(step.terminate) is terminate


def test_buffer_one_keeps_one_and_buffer_all_keeps_all() -> None:
    one = decide(record(Overlap.BUFFER_ONE, running=True, buffer=[T0 - 10_000]), T0 + 5, set())
    assert "buffer" not in one.fields and one.counters == {"skipped": 1}
    every = decide(record(Overlap.BUFFER_ALL, running=True, buffer=[T0 - 10_000]), T0 + 5, set())
    assert json.loads(every.fields["buffer"]) == [T0 - 10_000, T0]


def test_a_buffered_fire_starts_once_the_running_one_closed() -> None:
    rec = record(Overlap.BUFFER_ONE, running=True, buffer=[T0 - 10_000], next_ms=T0 + 10_000)
    assert decide(rec, T0 + 5, set()).start is None  # still running
    step = decide(rec, T0 + 5, {"w-prev"})  # learnt closed
    assert step.start == T0 - 10_000
    assert json.loads(step.fields["running"]) == []
    assert json.loads(step.fields["buffer"]) == []


def test_no_running_workflow_means_every_policy_starts() -> None:
    for overlap in Overlap:
        assert decide(record(overlap), T0 + 5, set()).start == T0


def test_fires_older_than_the_catchup_window_are_skipped_at_once() -> None:
    rec = record(catchup=timedelta(seconds=25))
    now = T0 + 60_000
    step = decide(rec, now, set())
    assert step.start is None
    # T0, +10 s, +20 s, +30 s are more than 25 s old: missed; +40 s is caught up next.
    assert step.counters == {"missed": 4}
    assert step.fields["next_ms"] == str(T0 + 40_000)


def test_backfill_walks_its_range_one_fire_at_a_time() -> None:
    rec = record(manual=[Manual(Overlap.ALLOW_ALL, after=T0 - 1, until=T0 + 20_000)],
                 next_ms=T0 + 1_000_000)
    step = decide(rec, T0 + 5, set())
    assert step.start == T0
    assert json.loads(step.fields["manual"]) == [{"s": T0, "e": T0 + 20_000, "o": "ALLOW_ALL"}]
    done = record(manual=[Manual(None, after=T0 + 20_000, until=T0 + 20_000)],
                  next_ms=T0 + 1_000_000)
    step = decide(done, T0 + 5, set())
    assert step.start is None and json.loads(step.fields["manual"]) == []


@pytest.mark.parametrize(("status", "pauses"), [
    ("FAILED", True), ("TIMED_OUT", True), ("TERMINATED", True),
    ("COMPLETED", False), ("CANCELED", False), ("", False),
])
def test_pause_on_failure_pauses_on_a_failed_workflow(status: str, pauses: bool) -> None:
    rec = record(Overlap.ALLOW_ALL, running=True)
    rec = dataclasses.replace(rec, policy=SchedulePolicy(Overlap.ALLOW_ALL, pause_on_failure=True))
    step = decide(rec, T0, {"w-prev": status})
    assert step.fields["running"] == "[]"
    if pauses:
        assert step.fields["paused"] == "1" and step.start is None
        assert step.fields["note"] == (
            f"paused by pause_on_failure: workflow w-prev ended {status}")
    else:
        assert "paused" not in step.fields and step.start == T0


def test_without_pause_on_failure_a_failed_workflow_changes_nothing() -> None:
    step = decide(record(Overlap.ALLOW_ALL, running=True), T0, {"w-prev": "FAILED"})
    assert "paused" not in step.fields and step.start == T0
