"""A schedule's stored state, and the one decision a worker makes about it at a time
(`decide`): which fire comes next and what the overlap policy does with it. Pure: the
worker reads the state and the running workflows' statuses, calls `decide`, and writes
the resulting Step with one fenced call (engine/lua/90_schedule.lua rd_sched_advance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.schedule_spec import ScheduleOverlapPolicy, SchedulePolicy, WireSpec

#: BUFFER_ALL keeps at most this many fires waiting (Temporal's limit too); more are
#: skipped.
MAX_BUFFER = 1000
#: Fires missed beyond the catch-up window are counted up to this many per step (a
#: 1-second schedule idle for a year would otherwise count for minutes).
MAX_MISSED_COUNT = 10_000


def fire_time_text(fire_ms: int) -> str:
    """RFC 3339 in UTC, whole seconds, as Temporal appends it to the workflow id."""
    moment = datetime.fromtimestamp(fire_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def workflow_id_of(action_id: str, fire_ms: int) -> str:
    return f"{action_id}-{fire_time_text(fire_ms)}"


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _opt_int(value: bytes | str | None) -> int | None:
    text = _text(value)
    return int(text) if text else None


@dataclass(frozen=True)
class Manual:
    """A trigger (`at`) or a backfill (`after`..`until`) queued by a client."""

    overlap: ScheduleOverlapPolicy | None
    at: int | None = None
    after: int = 0
    until: int = 0

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Manual:
        overlap = ScheduleOverlapPolicy(doc["o"]) if doc.get("o") else None
        if "t" in doc:
            return cls(overlap, at=int(doc["t"]))
        return cls(overlap, after=int(doc["s"]), until=int(doc["e"]))

    def wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"t": self.at} if self.at is not None else {
            "s": self.after, "e": self.until}
        if self.overlap is not None:
            doc["o"] = self.overlap.value
        return doc


@dataclass(frozen=True)
class Pending:
    fire_ms: int
    workflow_id: str
    lease_ms: int


@dataclass(frozen=True)
class RecentAction:
    fire_ms: int
    started_ms: int
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class ScheduleRecord:
    """One schedule's hash, parsed."""

    schedule_id: str
    spec: WireSpec
    #: The spec as stored (an update that leaves it alone keeps the next fire time).
    spec_wire: str
    policy: SchedulePolicy
    action: dict[str, Any]
    args: bytes
    memo: bytes
    paused: bool
    note: str
    next_ms: int | None
    due_ms: int | None
    seq: str
    version: str
    pending: Pending | None
    buffer: list[int]
    manual: list[Manual]
    running: list[tuple[str, str]]
    recent: list[RecentAction]
    actions: int
    skipped: int
    missed: int
    created_ms: int
    updated_ms: int

    @classmethod
    def parse(cls, schedule_id: str, raw: dict[bytes, bytes]) -> ScheduleRecord:
        f = {k.decode(): v for k, v in raw.items()}
        pending = None
        if _text(f.get("pending")):
            doc = json.loads(f["pending"])
            pending = Pending(int(doc["fire"]), doc["wf"], int(doc["lease"]))
        return cls(
            schedule_id=schedule_id,
            spec=WireSpec.parse(f["spec"]), spec_wire=_text(f["spec"]),
            policy=SchedulePolicy.from_wire(f["policy"]),
            action=json.loads(f["action"]),
            args=f.get("args", b""), memo=f.get("memo", b""),
            paused=_text(f.get("paused")) == "1", note=_text(f.get("note")),
            next_ms=_opt_int(f.get("next_ms")), due_ms=_opt_int(f.get("due_ms")),
            seq=_text(f.get("seq")), version=_text(f.get("version")),
            pending=pending,
            buffer=[int(x) for x in json.loads(f.get("buffer") or b"[]")],
            manual=[Manual.parse(d) for d in json.loads(f.get("manual") or b"[]")],
            running=[(w, r) for w, r in json.loads(f.get("running") or b"[]")],
            recent=[RecentAction(int(d["f"]), int(d["a"]), d["w"], d["r"])
                    for d in json.loads(f.get("recent") or b"[]")],
            actions=int(f.get("actions") or 0), skipped=int(f.get("skipped") or 0),
            missed=int(f.get("missed") or 0),
            created_ms=int(f.get("created_ms") or 0), updated_ms=int(f.get("updated_ms") or 0),
        )


def next_fields(spec: WireSpec, schedule_id: str, after_ms: int) -> dict[str, str]:
    """The next_ms / due_ms fields for the first fire after `after_ms`."""
    nxt = spec.next_after(after_ms)
    if nxt is None:
        return {"next_ms": "", "due_ms": ""}
    return {"next_ms": str(nxt), "due_ms": str(nxt + spec.jitter_of(schedule_id, nxt))}


@dataclass
class Step:
    """What one decision changes (see rd_sched_advance)."""

    fields: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    #: The fire to start now (its nominal time), recorded as pending.
    start: int | None = None
    cancel: list[tuple[str, str]] = field(default_factory=list)
    terminate: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fired(self) -> bool:
        """Whether the step consumed a fire (the worker then looks for the next one)."""
        return self.start is not None or bool(self.counters) or "buffer" in self.fields


#: How a schedule's workflow may end that makes `pause_on_failure` pause it (Temporal's).
PAUSING_STATUSES = ("FAILED", "TIMED_OUT", "TERMINATED")


def decide(rec: ScheduleRecord, now_ms: int, closed: set[str] | dict[str, str]) -> Step:
    """The next step: pause (pause_on_failure, a workflow of the schedule failed), else
    start a buffered fire whose turn has come, else take the next manual (trigger,
    backfill) or spec fire that is due and apply the overlap policy. `closed`:
    workflow ids of `rec.running` known to have closed, or a map of them to how their
    run ended ("" unknown: the id holds another run)."""
    step = Step()
    running = [r for r in rec.running if r[0] not in closed]
    if running != rec.running:
        step.fields["running"] = json.dumps(running)
    failed = [(w, s) for w, s in closed.items() if s in PAUSING_STATUSES] \
        if isinstance(closed, dict) else []
    if failed and rec.policy.pause_on_failure and not rec.paused:
        workflow_id, status = failed[0]
        step.fields["paused"] = "1"
        step.fields["note"] = (f"paused by pause_on_failure: workflow {workflow_id} ended "
                               f"{status}")
        return step
    buffer = list(rec.buffer)
    if buffer and not running:
        step.start = buffer.pop(0)
        step.fields["buffer"] = json.dumps(buffer)
        return step
    fire: int | None = None
    overlap = rec.policy.overlap
    if rec.manual:
        manual = list(rec.manual)
        item = manual[0]
        if item.at is not None:
            fire = item.at
            manual.pop(0)
        else:
            times = rec.spec.times_between(item.after, item.until, 1)
            if times:
                fire = times[0]
                manual[0] = Manual(item.overlap, after=fire, until=item.until)
            else:
                manual.pop(0)
        overlap = item.overlap or overlap
        step.fields["manual"] = json.dumps([m.wire() for m in manual])
        if fire is None:
            return step
    elif (not rec.paused and rec.next_ms is not None and rec.due_ms is not None
          and rec.due_ms <= now_ms):
        fire = rec.next_ms
        window_start = now_ms - int(rec.policy.catchup_window.total_seconds() * 1000)
        if fire < window_start:
            # Missed while no worker ran, longer ago than the catch-up window: skip
            # every such fire at once and go on from the first one inside the window.
            missed = 1 + len(rec.spec.times_between(fire, window_start - 1, MAX_MISSED_COUNT))
            step.counters["missed"] = missed
            step.fields.update(next_fields(rec.spec, rec.schedule_id, window_start - 1))
            return step
        step.fields.update(next_fields(rec.spec, rec.schedule_id, fire))
    else:
        return step
    _apply_overlap(step, overlap, fire, running, buffer)
    return step


def _apply_overlap(step: Step, overlap: ScheduleOverlapPolicy, fire: int,
                   running: list[tuple[str, str]], buffer: list[int]) -> None:
    if not running or overlap is ScheduleOverlapPolicy.ALLOW_ALL:
        step.start = fire
        return
    match overlap:
        case ScheduleOverlapPolicy.SKIP:
            step.counters["skipped"] = 1
        case ScheduleOverlapPolicy.BUFFER_ONE | ScheduleOverlapPolicy.CANCEL_OTHER:
            if overlap is ScheduleOverlapPolicy.CANCEL_OTHER:
                step.cancel = list(running)
            if buffer:
                step.counters["skipped"] = 1
            else:
                step.fields["buffer"] = json.dumps([fire])
        case ScheduleOverlapPolicy.BUFFER_ALL:
            if len(buffer) >= MAX_BUFFER:
                step.counters["skipped"] = 1
            else:
                step.fields["buffer"] = json.dumps([*buffer, fire])
        case ScheduleOverlapPolicy.TERMINATE_OTHER:
            step.terminate = list(running)
            step.start = fire
