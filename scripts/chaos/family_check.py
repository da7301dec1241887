"""The family storm's check (scripts/chaos/family_storm.py), on top of the shared one.

- Workflows that must complete: the shared checker (scripts/chaos/checker.py: history
  ids, one completion, the right result, activities against the ledger).
- Workflows that must end terminated (the doomed parents, and their children by the
  parent close policy): state TERMINATED, history ids 1..N, one closing event, the
  `WorkflowExecutionTerminated` last. A child still running is an orphan.
- Updates: one `WorkflowExecutionUpdateAccepted` and one `...Completed` per update id
  sent, none other, and each caller got "<workflow id>:<n>".
- The Mailbox: its record equals the `SignalExternalWorkflowExecutionInitiated` events
  of the parents' histories (and those are `mails` per parent).
Raw keys are read (engine/keys.py), as the shared checker does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.chaos import checker
from sdk import Client

ACCEPTED = b"WorkflowExecutionUpdateAccepted"
COMPLETED = b"WorkflowExecutionUpdateCompleted"
SIGNAL_OUT = b"SignalExternalWorkflowExecutionInitiated"


@dataclass
class Figures:
    verdict: checker.Verdict = field(default_factory=checker.Verdict)
    workflows: int = 0
    terminated_right: int = 0
    children_by_policy: int = 0
    orphans: int = 0
    updates_sent: int = 0
    updates_once: int = 0
    #: Updates sent to a child as its parent was terminated whose caller was told the
    #: workflow closed first (the others completed, and count as applied once).
    raced_failed: int = 0
    signals_sent: int = 0
    mails_sent: int = 0
    mails_delivered: int = 0
    children_other_shard: int = 0
    children: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.problems

    def line(self) -> str:
        right = self.verdict.completed_right + self.terminated_right
        return (
            f"{self.workflows} workflows, {right} ended right "
            f"({100.0 * right / max(self.workflows, 1):.1f}%); "
            f"{self.children_other_shard}/{self.children} children in another shard than "
            f"their parent; {self.updates_once}/{self.updates_sent} updates applied once "
            f"to their callers ({self.raced_failed} others, racing a termination, "
            f"failed to theirs: the workflow closed first); {self.signals_sent} signals "
            f"to family workflows; "
            f"{self.children_by_policy} children terminated by the parent close policy, "
            f"{self.orphans} orphaned; {self.mails_delivered} mailbox signals delivered "
            f"of {self.mails_sent} sent per the parents' histories; "
            f"{len(self.problems) + len(self.verdict.problems)} problems; "
            f"{self.verdict.activities} activities, "
            f"{self.verdict.duplicate_activity_runs} duplicate runs")

    def details(self, limit: int = 20) -> str:
        return "\n".join([*self.problems[:limit], self.verdict.details(limit)])


async def _read(client: Client, ids: list[str]
                ) -> dict[str, tuple[dict[bytes, bytes], list[dict[bytes, bytes]]]]:
    pipe = client.redis.pipeline(transaction=False)
    for wf_id in ids:
        pipe.hgetall(client.keys.workflow(wf_id))
        pipe.xrange(client.keys.history(wf_id))
    replies: list[Any] = await pipe.execute()
    return {wf_id: (replies[2 * i], [f for _, f in replies[2 * i + 1]])
            for i, wf_id in enumerate(ids)}


def terminated_problems(wf_id: str, state: dict[bytes, bytes],
                        events: list[dict[bytes, bytes]]) -> list[str]:
    """What is wrong with a workflow that must have ended terminated."""
    if not state:
        return [f"{wf_id}: lost"]
    problems: list[str] = []
    status = state.get(b"status")
    if status == b"RUNNING":
        return [f"{wf_id}: still RUNNING (orphaned)"]
    if status != b"TERMINATED":
        problems.append(f"{wf_id}: status {status!r}, expected TERMINATED")
    ids = [int(f.get(b"id", b"0")) for f in events]
    if ids != list(range(1, len(events) + 1)):
        problems.append(f"{wf_id}: event ids are not 1..{len(events)}")
    closing = [f[b"type"] for f in events if f.get(b"type") in checker.CLOSING]
    if closing != [b"WorkflowExecutionTerminated"] or events[-1].get(b"type") != closing[-1]:
        problems.append(f"{wf_id}: closing events {closing!r}")
    return problems


def update_problems(wf_id: str, events: list[dict[bytes, bytes]], sent: list[str],
                    results: Mapping[tuple[str, str], object],
                    raced: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """What is wrong with the updates sent to one workflow (`sent`: their ids). One
    whose caller was told the workflow closed first (`raced`) must have no completed
    event and at most one accepted."""
    problems: list[str] = []
    failed = [u for u in sent if (wf_id, u) in (raced or {})]
    sent = [u for u in sent if u not in failed]
    for kind in (ACCEPTED, COMPLETED):
        got = Counter(f.get(b"update_id", b"").decode() for f in events
                      if f.get(b"type") == kind)
        for update_id in failed:
            if got.pop(update_id, 0) > (1 if kind == ACCEPTED else 0):
                problems.append(f"{wf_id}: {update_id} failed to its caller "
                                f"({raced and raced[(wf_id, update_id)]}) but has "
                                f"{kind.decode()} events")
        if got != Counter(sent):
            problems.append(f"{wf_id}: {kind.decode()} events per update id {dict(got)}, "
                            f"expected one each of {sorted(sent)}")
    for update_id in sent:
        n = update_id.rsplit("-u", 1)[1]
        if results.get((wf_id, update_id)) != f"{wf_id}:{n}":
            problems.append(f"{wf_id}: the caller of {update_id} got "
                            f"{results.get((wf_id, update_id))!r}")
    return problems


async def check(
    client: Client, ledger: Path, *, results: Mapping[str, object], terminated: list[str],
    by_policy: list[str], mailbox: str, mailbox_got: list[list[object]], parents: list[str],
    mails: int, sent_updates: Mapping[str, list[str]],
    update_results: Mapping[tuple[str, str], object], signals_sent: int,
    raced: Mapping[tuple[str, str], str],
) -> Figures:
    figures = Figures(signals_sent=signals_sent, raced_failed=len(raced))
    figures.verdict = await checker.check(
        client.redis, client.keys, client.codec, {**results, mailbox: mailbox_got},
        ledger=ledger)
    ids = [*terminated, *by_policy]
    read = await _read(client, [*ids, *sent_updates, *parents])
    figures.workflows = figures.verdict.workflows + len(ids)
    for wf_id in ids:
        state, events = read[wf_id]
        problems = terminated_problems(wf_id, state, events)
        figures.problems += problems
        figures.orphans += any("orphaned" in p for p in problems)
        if not problems:
            figures.terminated_right += 1
            figures.children_by_policy += wf_id in by_policy
    for wf_id, sent in sent_updates.items():
        problems = update_problems(wf_id, read[wf_id][1], sent, update_results, raced)
        figures.problems += problems
        figures.updates_sent += len([u for u in sent if (wf_id, u) not in raced])
        if not problems:
            figures.updates_once += len([u for u in sent if (wf_id, u) not in raced])
    sent_mail: Counter[tuple[object, ...]] = Counter()
    for wf_id in parents:
        for f in read[wf_id][1]:
            if f.get(b"type") == SIGNAL_OUT and f.get(b"workflow_id") == mailbox.encode():
                sent_mail[tuple(client.codec.decode(f[b"input"]))] += 1
    got_mail = Counter(tuple(m) for m in mailbox_got)
    figures.mails_sent, figures.mails_delivered = sent_mail.total(), got_mail.total()
    if got_mail != sent_mail:
        figures.problems.append(f"{mailbox}: got {sorted(got_mail.items())[:10]}, the "
                                f"parents sent {sorted(sent_mail.items())[:10]}")
    want_mail = Counter((p, seq) for p in parents for seq in range(mails))
    if sent_mail != want_mail:
        figures.problems.append(f"the parents' histories show {sent_mail.total()} mailbox "
                                f"signals, expected {mails} from each parent")
    children = [wf_id for wf_id in [*results, *by_policy] if "-c" in wf_id]
    figures.children = len(children)
    figures.children_other_shard = sum(
        client.keys.shard(c) != client.keys.shard(c.rsplit("-c", 1)[0]) for c in children)
    return figures
