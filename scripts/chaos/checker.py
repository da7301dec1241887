"""The one check every chaos scenario ends with.

For every workflow the client was told had started:
- its history stream holds events numbered 1..N, no gap, no duplicate, and its mutable
  state agrees (`next_event_id` is N + 1, `status` matches the closing event);
- it completed exactly once (one `WorkflowExecutionCompleted`, the last event) with the
  result the scenario expects;
- every activity it scheduled completed once in history, and the side-effect ledger
  (scripts/chaos/ledger.py, outside Redis) shows how often it really ran: at least once
  for each completed activity, and the runs beyond the first are counted as duplicates
  (activities are at-least-once; a duplicate is a cost, not a corruption).

A workflow missing altogether is reported as lost: that is how an acknowledged start
that a crashed Redis forgot shows up. Workflows whose start call failed with a
connection error may or may not exist (`maybe_started`): they are checked only if they
do. The check reads raw keys (engine/keys.py, docs/inspect.md), not the SDK, so an SDK
bug cannot hide a broken history. It covers the current run of each workflow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from engine.codec import PayloadCodec
from engine.keys import Keys
from scripts.chaos import ledger as ledger_mod

CLOSING = {
    b"WorkflowExecutionCompleted": b"COMPLETED",
    b"WorkflowExecutionFailed": b"FAILED",
    b"WorkflowExecutionCanceled": b"CANCELED",
    b"WorkflowExecutionTerminated": b"TERMINATED",
    b"WorkflowExecutionTimedOut": b"TIMED_OUT",
    b"WorkflowExecutionContinuedAsNew": b"CONTINUED_AS_NEW",
}


@dataclass
class Verdict:
    """What the checker found. `ok` only when there is no problem at all."""

    workflows: int = 0
    completed_right: int = 0
    #: Workflows the client was told started that no longer exist.
    lost: list[str] = field(default_factory=list)
    #: One line per broken invariant: "<workflow id>: <what>".
    problems: list[str] = field(default_factory=list)
    activities: int = 0
    #: Completed activity executions beyond the first, per the ledger.
    duplicate_activity_runs: int = 0
    #: Executions that started and never finished (their worker was killed).
    interrupted_activity_runs: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost

    @property
    def percent_right(self) -> float:
        return 100.0 * self.completed_right / self.workflows if self.workflows else 100.0

    def summary(self) -> str:
        return (
            f"{self.completed_right}/{self.workflows} workflows completed right "
            f"({self.percent_right:.1f}%), {len(self.lost)} lost, {len(self.problems)} "
            f"problems; {self.activities} activities, {self.duplicate_activity_runs} "
            f"duplicate runs, {self.interrupted_activity_runs} interrupted runs"
        )

    def details(self, limit: int = 20) -> str:
        lines = [self.summary()]
        lines += [f"lost: {wf_id}" for wf_id in self.lost[:limit]]
        lines += self.problems[:limit]
        return "\n".join(lines)


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def check(
    redis: Redis,
    keys: Keys,
    codec: PayloadCodec,
    expected: Mapping[str, Any],
    *,
    ledger: Path | None = None,
    maybe_started: Mapping[str, Any] | None = None,
) -> Verdict:
    """Check every workflow of `expected` (id -> result) and of `maybe_started`."""
    verdict = Verdict()
    effects = ledger_mod.read(ledger) if ledger is not None else None
    maybe = dict(maybe_started or {})
    ids = list(expected) + [i for i in maybe if i not in expected]
    for start in range(0, len(ids), 100):
        batch = ids[start : start + 100]
        pipe = redis.pipeline(transaction=False)
        for wf_id in batch:
            pipe.hgetall(keys.workflow(wf_id))
            pipe.xrange(keys.history(wf_id))
        replies: list[Any] = await pipe.execute()
        for i, wf_id in enumerate(batch):
            state: dict[bytes, bytes] = replies[2 * i]
            history: list[tuple[bytes, dict[bytes, bytes]]] = replies[2 * i + 1]
            if not state and not history:
                if wf_id in expected:
                    verdict.workflows += 1
                    verdict.lost.append(wf_id)
                continue
            verdict.workflows += 1
            want = expected[wf_id] if wf_id in expected else maybe[wf_id]
            _check_one(verdict, codec, wf_id, want, state, history, effects)
    return verdict


def _check_one(
    verdict: Verdict,
    codec: PayloadCodec,
    wf_id: str,
    want: Any,
    state: dict[bytes, bytes],
    history: list[tuple[bytes, dict[bytes, bytes]]],
    effects: ledger_mod.Effects | None,
) -> None:
    problems = verdict.problems
    before = len(problems)
    events = [fields for _, fields in history]
    numbers = [_int(f.get(b"id")) for f in events]
    if numbers != list(range(1, len(events) + 1)):
        problems.append(f"{wf_id}: event ids are {_runs(numbers)}, not 1..{len(events)}")
    next_id = _int(state.get(b"next_event_id"))
    if next_id != len(events) + 1:
        problems.append(
            f"{wf_id}: state next_event_id {next_id} disagrees with {len(events)} events"
        )
    types = [f.get(b"type", b"?") for f in events]
    closing = [t for t in types if t in CLOSING]
    status = state.get(b"status")
    if closing and CLOSING[closing[-1]] != status:
        problems.append(f"{wf_id}: state status {status!r} but history closed {closing[-1]!r}")
    if closing != [b"WorkflowExecutionCompleted"] or types[-1] != closing[-1]:
        problems.append(f"{wf_id}: closing events {closing!r} (status {status!r})")
    else:
        try:
            got = codec.decode(events[-1][b"result"])
        except (KeyError, ValueError) as exc:
            got = f"<undecodable result: {exc}>"
        if got != want:
            problems.append(f"{wf_id}: result {got!r}, expected {want!r}")
    scheduled = Counter(_int(f.get(b"activity_id")) for f in events
                        if f.get(b"type") == b"ActivityTaskScheduled")
    completed = Counter(_int(f.get(b"activity_id")) for f in events
                        if f.get(b"type") == b"ActivityTaskCompleted")
    verdict.activities += len(scheduled)
    if any(n > 1 for n in scheduled.values()) or any(n > 1 for n in completed.values()):
        problems.append(f"{wf_id}: an activity scheduled or completed twice: "
                        f"{dict(scheduled)} / {dict(completed)}")
    if effects is not None:
        for act_id in completed:
            assert act_id is not None
            runs = effects.done[(wf_id, act_id)]
            if runs == 0:
                problems.append(f"{wf_id}: activity {act_id} completed with no run in the ledger")
            verdict.duplicate_activity_runs += max(0, runs - 1)
        for act_id in scheduled:
            assert act_id is not None
            key = (wf_id, act_id)
            verdict.interrupted_activity_runs += max(0, effects.started[key] - effects.done[key])
    if len(problems) == before:
        verdict.completed_right += 1


def _runs(numbers: Iterable[int | None]) -> str:
    """A short form of an id sequence for a report: 1..7,7,9..12."""
    out: list[str] = []
    seq = list(numbers)
    i = 0
    while i < len(seq):
        j = i
        while j + 1 < len(seq) and seq[i] is not None and seq[j + 1] == (seq[j] or 0) + 1:
            j += 1
        out.append(f"{seq[i]}..{seq[j]}" if j > i else str(seq[i]))
        i = j + 1
    text = ",".join(out)
    return text if len(text) < 200 else text[:200] + "..."
