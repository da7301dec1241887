"""When a schedule fires (temporalio's ScheduleSpec and its parts), as pure functions
of time: no I/O, so the worker's scheduler and the unit tests share them.

Times are whole milliseconds since the Unix epoch (UTC). Cron expressions are parsed by
`cronsim` (5 fields, or 6 with seconds first), in the spec's time zone (zoneinfo).
Intervals are aligned to the epoch plus their offset, as Temporal aligns them: every
5 minutes fires at :00, :05, ... whatever the creation time. Calendars are stored as
6-field cron expressions, but match as Temporal's do: a day must match both the day of
month and the day of week (cron takes either when both are restricted), so their cron
times are filtered by day (`_CalendarDays`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from engine.errors import InvalidArgumentError

#: A spec with no fire time within this far after a point has none (a cron expression
#: like "0 0 30 2 *" never matches; cronsim would search for ever).
_HORIZON = timedelta(days=366 * 5)


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidArgumentError(f"{moment!r} needs a time zone (e.g. timezone.utc)")
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def positive_ms(value: timedelta | None, what: str, *, allow_zero: bool = False) -> int:
    if value is None:
        return 0
    if not isinstance(value, timedelta):
        raise InvalidArgumentError(f"{what} must be a timedelta, not {value!r}")
    ms = int(value.total_seconds() * 1000)
    if ms < 0 or (ms == 0 and not allow_zero):
        raise InvalidArgumentError(f"{what} must be positive, not {value!r}")
    return ms


@dataclass(frozen=True)
class ScheduleRange:
    """Inclusive range of values of one calendar field (`end` 0: just `start`)."""

    start: int
    end: int = 0
    step: int = 0

    def cron(self) -> str:
        end = max(self.end, self.start)
        text = str(self.start) if end == self.start else f"{self.start}-{end}"
        return f"{text}/{self.step}" if self.step > 1 else text

    @classmethod
    def parse(cls, text: str, full: str) -> list[ScheduleRange]:
        """The ranges of one field of a calendar's cron form (what `cron` wrote)."""
        ranges = []
        for part in (full if text == "*" else text).split(","):
            span, _, step = part.partition("/")
            start, _, end = span.partition("-")
            ranges.append(cls(int(start), int(end or 0), int(step or 0)))
        return ranges

    def values(self) -> range:
        return range(self.start, max(self.end, self.start) + 1, max(self.step, 1))


_FULL_RANGES = ("0-59", "0-59", "0-23", "1-31", "1-12", "0-6")


@dataclass(frozen=True)
class ScheduleCalendarSpec:
    """Calendar fields that must all match (temporalio's shape; defaults: second 0,
    minute 0, hour 0, every day of month, month and day of week). Year ranges are not
    supported (cron has no year field)."""

    second: Sequence[ScheduleRange] = (ScheduleRange(0),)
    minute: Sequence[ScheduleRange] = (ScheduleRange(0),)
    hour: Sequence[ScheduleRange] = (ScheduleRange(0),)
    day_of_month: Sequence[ScheduleRange] = (ScheduleRange(1, 31),)
    month: Sequence[ScheduleRange] = (ScheduleRange(1, 12),)
    day_of_week: Sequence[ScheduleRange] = (ScheduleRange(0, 6),)
    comment: str = ""

    def cron(self) -> str:
        """The same times as a 6-field cron expression (seconds first, cronsim's form)."""
        fields = (self.second, self.minute, self.hour, self.day_of_month, self.month,
                  self.day_of_week)
        parts = []
        for ranges, full in zip(fields, _FULL_RANGES, strict=True):
            if not ranges:
                raise InvalidArgumentError("a ScheduleCalendarSpec field needs at least one range")
            # "*", not "1-31": cron ORs a restricted day of month with a restricted day
            # of week, so only a field left whole may be written whole.
            text = ",".join(r.cron() for r in ranges)
            parts.append("*" if text == full else text)
        return " ".join(parts)

    @classmethod
    def from_cron(cls, expression: str) -> ScheduleCalendarSpec:
        """Back from `cron()`'s form (what a stored schedule keeps)."""
        second, minute, hour, day_of_month, month, day_of_week = (
            ScheduleRange.parse(text, full)
            for text, full in zip(expression.split(), _FULL_RANGES, strict=True))
        return cls(second, minute, hour, day_of_month, month, day_of_week)


class _CalendarDays:
    """The days a calendar's cron form may fire on, by Temporal's rule: the day of
    month AND the day of week must match. None when cron's own rule gives the same
    (either field left whole)."""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        self.days = {v for r in ScheduleRange.parse(fields[3], "1-31") for v in r.values()}
        #: cron's (and Temporal's) day of week: 0 is Sunday; 7 too.
        self.weekdays = {v % 7 for r in ScheduleRange.parse(fields[5], "0-6")
                         for v in r.values()}

    @staticmethod
    def of(expression: str) -> _CalendarDays | None:
        fields = expression.split()
        return _CalendarDays(expression) if fields[3] != "*" and fields[5] != "*" else None

    def match(self, moment: datetime) -> bool:
        return moment.day in self.days and (moment.weekday() + 1) % 7 in self.weekdays


@dataclass(frozen=True)
class ScheduleIntervalSpec:
    """Fire every `every`, at epoch + k*every + offset."""

    every: timedelta
    offset: timedelta = timedelta(0)


@dataclass(frozen=True)
class ScheduleSpec:
    """When to fire: the union of the cron expressions, intervals and calendars, within
    [start_at, end_at], each fire delayed by a stable random part of `jitter`."""

    cron_expressions: Sequence[str] = ()
    intervals: Sequence[ScheduleIntervalSpec] = ()
    calendars: Sequence[ScheduleCalendarSpec] = ()
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter: timedelta | None = None
    #: IANA name ("Europe/Paris") the cron expressions and calendars are read in.
    time_zone_name: str | None = None

    def to_wire(self) -> str:
        """The spec as stored in the schedule's hash (validated: a bad spec is an error
        here, at create/update, never a schedule that cannot fire)."""
        crons = [_check_cron(e, self.time_zone_name) for e in self.cron_expressions]
        crons += [_check_cron(c.cron(), self.time_zone_name) for c in self.calendars]
        intervals = []
        for interval in self.intervals:
            every = positive_ms(interval.every, "interval every")
            offset = positive_ms(interval.offset, "interval offset", allow_zero=True)
            intervals.append([every, offset % every])
        doc = {
            "cron": crons,
            "calendars": [c.cron() for c in self.calendars],
            "intervals": intervals,
            "start": to_ms(self.start_at) if self.start_at else None,
            "end": to_ms(self.end_at) if self.end_at else None,
            "jitter": positive_ms(self.jitter, "jitter", allow_zero=True),
            "tz": self.time_zone_name or "",
        }
        return json.dumps(doc, separators=(",", ":"))


def _zone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(f"unknown time zone {name!r}") from None


def _check_cron(expression: str, zone_name: str | None) -> str:
    if not isinstance(expression, str):
        raise InvalidArgumentError(f"a cron expression must be a string, not {expression!r}")
    try:
        CronSim(expression, datetime.now(_zone(zone_name)))
    except CronSimError as exc:
        raise InvalidArgumentError(f"bad cron expression {expression!r}: {exc}") from None
    return expression


@dataclass(frozen=True)
class WireSpec:
    """A stored spec, ready to compute fire times."""

    crons: list[str] = field(default_factory=list)
    calendars: list[str] = field(default_factory=list)
    intervals: list[tuple[int, int]] = field(default_factory=list)
    start_ms: int | None = None
    end_ms: int | None = None
    jitter_ms: int = 0
    tz: str = ""

    @classmethod
    def parse(cls, text: str | bytes) -> WireSpec:
        doc: dict[str, Any] = json.loads(text)
        calendars = list(doc.get("calendars", []))
        return cls(
            crons=[c for c in doc["cron"] if c not in calendars],
            calendars=calendars,
            intervals=[(int(e), int(o)) for e, o in doc["intervals"]],
            start_ms=doc.get("start"), end_ms=doc.get("end"),
            jitter_ms=int(doc.get("jitter") or 0), tz=doc.get("tz") or "",
        )

    def public(self) -> ScheduleSpec:
        """Back to the public shape."""
        return ScheduleSpec(
            cron_expressions=list(self.crons),
            calendars=[ScheduleCalendarSpec.from_cron(c) for c in self.calendars],
            intervals=[ScheduleIntervalSpec(timedelta(milliseconds=e), timedelta(milliseconds=o))
                       for e, o in self.intervals],
            start_at=from_ms(self.start_ms) if self.start_ms is not None else None,
            end_at=from_ms(self.end_ms) if self.end_ms is not None else None,
            jitter=timedelta(milliseconds=self.jitter_ms) if self.jitter_ms else None,
            time_zone_name=self.tz or None,
        )

    def next_after(self, after_ms: int) -> int | None:
        """The first nominal fire time strictly after `after_ms`, None when there is none
        (past end_at, or a spec that never matches)."""
        floor = after_ms
        if self.start_ms is not None and self.start_ms - 1 > floor:
            floor = self.start_ms - 1
        candidates = [floor + every - (floor - offset) % every
                      for every, offset in self.intervals]
        zone = _zone(self.tz)
        start = from_ms(floor).astimezone(zone)
        # cronsim works in whole seconds: a floor inside a second still finds the next one.
        start = start.replace(microsecond=0)
        horizon = start + _HORIZON
        for expression in self.crons:
            for moment in CronSim(expression, start):
                ms = to_ms(moment)
                if moment > horizon:
                    break
                if ms > floor:
                    candidates.append(ms)
                    break
        for expression in self.calendars:
            found = _next_calendar_time(expression, start, floor, horizon)
            if found is not None:
                candidates.append(found)
        if not candidates:
            return None
        nxt = min(candidates)
        if self.end_ms is not None and nxt > self.end_ms:
            return None
        return nxt

    def times_between(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Up to `limit` nominal fire times in (after_ms, until_ms]."""
        out: list[int] = []
        at = after_ms
        while len(out) < limit:
            nxt = self.next_after(at)
            if nxt is None or nxt > until_ms:
                break
            out.append(nxt)
            at = nxt
        return out

    def jitter_of(self, schedule_id: str, nominal_ms: int) -> int:
        """The delay of one fire: random-looking, in [0, jitter), and the same on every
        worker (so the due time does not move when another worker reads it)."""
        if not self.jitter_ms:
            return 0
        return zlib.crc32(f"{schedule_id}|{nominal_ms}".encode()) % self.jitter_ms


def _next_calendar_time(expression: str, start: datetime, floor: int,
                        horizon: datetime) -> int | None:
    """A calendar's first time after `floor` (ms), None before `horizon`. cron's times
    on a day that matches only one of day of month and day of week are skipped, a
    whole day at a time (a calendar may fire every second of the days it takes)."""
    days = _CalendarDays.of(expression)
    while start <= horizon:
        for moment in CronSim(expression, start):
            if moment > horizon:
                return None
            if days is not None and not days.match(moment):
                # Go on from the end of that day (its last second: CronSim yields
                # the times after it).
                start = moment.replace(hour=23, minute=59, second=59)
                break
            ms = to_ms(moment)
            if ms > floor:
                return ms
        else:
            return None
    return None


class ScheduleOverlapPolicy(Enum):
    """What a fire does while the schedule's previous workflow still runs."""

    #: Do not start; count it skipped (the default).
    SKIP = "SKIP"
    #: Start it once the running one closes; at most one waits, later ones are skipped.
    BUFFER_ONE = "BUFFER_ONE"
    #: Start each, one after the other, as the running ones close.
    BUFFER_ALL = "BUFFER_ALL"
    #: Ask the running one to cancel; start once it has closed.
    CANCEL_OTHER = "CANCEL_OTHER"
    #: Terminate the running one and start at once.
    TERMINATE_OTHER = "TERMINATE_OTHER"
    #: Start at once, whatever runs.
    ALLOW_ALL = "ALLOW_ALL"


#: Temporal's default catch-up window: a fire missed by longer than this is skipped.
DEFAULT_CATCHUP_WINDOW = timedelta(days=365)


@dataclass(frozen=True)
class SchedulePolicy:
    overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP
    #: Fires missed (no worker ran) by longer than this are skipped, not caught up.
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    #: Pause the schedule when a workflow it started fails, times out or is terminated
    #: (its note says which), before its next fire (docs/schedules.md).
    pause_on_failure: bool = False

    def to_wire(self) -> str:
        if not isinstance(self.overlap, ScheduleOverlapPolicy):
            raise InvalidArgumentError(
                f"overlap must be a ScheduleOverlapPolicy, not {self.overlap!r}")
        catchup = positive_ms(self.catchup_window, "catchup_window")
        return json.dumps({"overlap": self.overlap.value, "catchup": catchup,
                           "pause_on_failure": self.pause_on_failure}, separators=(",", ":"))

    @classmethod
    def from_wire(cls, text: str | bytes) -> SchedulePolicy:
        doc = json.loads(text)
        return cls(ScheduleOverlapPolicy(doc["overlap"]),
                   timedelta(milliseconds=int(doc["catchup"])),
                   bool(doc.get("pause_on_failure")))


@dataclass(frozen=True)
class ScheduleState:
    note: str = ""
    paused: bool = False


@dataclass(frozen=True)
class ScheduleBackfill:
    """Fire for every spec time in [start_at, end_at], as if they had come then."""

    start_at: datetime
    end_at: datetime
    overlap: ScheduleOverlapPolicy | None = None
