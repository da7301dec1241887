"""What the workflow- and activity-task transitions answer, decoded: pure functions on
the replies of rd_wft_start, rd_wft_complete and rd_act_complete (engine/store.py builds
the calls), and where each reply tells when its earliest new timer falls due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import events as ev
from engine.calls import due_in_slot, pairs_of, text_of, unwrap
from engine.updates import UpdateRequest, parse_requests


@dataclass(frozen=True)
class WorkflowTaskStart:
    token: int
    now_ms: int
    attempt: int
    #: (stream entry id, event) pairs after the cursor the worker gave.
    entries: list[tuple[bytes, ev.Event]]
    #: Updates admitted for the workflow and not yet run (engine/updates.py).
    updates: list[UpdateRequest] = field(default_factory=list)
    #: The history's next event id (0: not told): a cached run must have seen all before it.
    next_event_id: int = 0


@dataclass(frozen=True)
class WorkflowTaskCommit:
    last_event_id: int
    last_stream_id: bytes
    closed: bool
    close_dropped: bool
    #: Activity tasks delivered to this worker with the commit: (stream, id, fields).
    eager: list[tuple[str, str, dict[bytes, bytes]]] = field(default_factory=list)
    #: The server's time of the commit (ms; 0: not told): the ts of the events it wrote.
    server_ms: int = 0


@dataclass(frozen=True)
class TimerScan:
    """What one pass of `fire_timers` did and saw."""

    fired: int
    #: Some shard had more due timers than one pass fires: scan again at once.
    more: bool
    #: Milliseconds from the scan to the earliest timer left, on the server's clock;
    #: None when no timer is left, or the server's library predates this answer.
    next_in_ms: int | None


def reply_status(reply: Any) -> str:
    """The first word of a function's reply: "ok", or why nothing was applied."""
    return text_of(unwrap(reply)[0])


#: Call.timer_due_in of rd_wft_start, rd_wft_complete, rd_wft_fail, rd_act_start and
#: rd_act_complete.
wft_start_due_in = due_in_slot(6)
wft_complete_due_in = due_in_slot(6)
wft_fail_due_in = due_in_slot(1)
act_start_due_in = due_in_slot(5)
act_complete_due_in = due_in_slot(3)


def decode_entries(raw: Sequence[Any]) -> list[tuple[bytes, ev.Event]]:
    out: list[tuple[bytes, ev.Event]] = []
    for sid, fields in raw:
        if isinstance(fields, list):  # raw RESP2 from inside a Lua reply
            fields = pairs_of(fields)
        out.append((sid, ev.decode_event(fields)))
    return out



def parse_wft_start(reply: Any) -> WorkflowTaskStart | None:
    if reply_status(reply) != "ok":
        return None
    return WorkflowTaskStart(
        token=int(reply[1]),
        now_ms=int(reply[2]),
        attempt=int(reply[3]),
        entries=decode_entries(reply[4]),
        updates=parse_requests(reply[5]) if len(reply) > 5 else [],
        next_event_id=int(reply[7]) if len(reply) > 7 and reply[7] else 0,
    )


def parse_wft_complete(reply: Any) -> WorkflowTaskCommit | str:
    """The commit, or "stale" (dropped) / "retry" (speculation failed: start it)."""
    status = reply_status(reply)
    if status != "ok":
        return status
    return WorkflowTaskCommit(
        last_event_id=int(reply[1]),
        last_stream_id=bytes(reply[2]),
        closed=bool(int(reply[3])),
        close_dropped=bool(int(reply[4])),
        eager=[
            (text_of(stream), text_of(sid), pairs_of(flat))
            for stream, sid, flat in (reply[5] if len(reply) > 5 else [])
        ],
        server_ms=int(reply[7]) if len(reply) > 7 else 0,
    )


def parse_eager_wft(reply: Any) -> tuple[str, str, dict[bytes, bytes]] | None:
    """The workflow task an activity completion handed over: (stream, id, fields)."""
    if not isinstance(reply, list) or len(reply) < 3 or not reply[2]:
        return None
    stream, sid, fields = reply[2]
    return text_of(stream), text_of(sid), pairs_of(fields)


@dataclass(frozen=True)
class OneWriteStep:
    """What rd_act_complete_wft (rd_act_fail_wft) did: `commit` is the workflow task
    completion when the speculation landed, else None and `refused` says why ('owner',
    'moved', 'clock'; for a failure 'retry', 'cancel');
    `eager` is then the workflow task handed over, if any, to start normally."""

    commit: WorkflowTaskCommit | None
    refused: str
    eager: tuple[str, str, dict[bytes, bytes]] | None
    #: The server's time of the write (ms): for the worker's estimate of the server clock.
    server_ms: int


def parse_act_complete_wft(reply: Any) -> OneWriteStep | None:
    """rd_act_complete_wft's reply; None when the attempt was stale (nothing written)."""
    if reply_status(reply) != "ok":
        return None
    spec = reply[4]
    if isinstance(spec, list):
        commit = parse_wft_complete(spec)
        assert not isinstance(commit, str)  # the Lua returns only an 'ok' one here
        return OneWriteStep(commit, "", None, int(reply[5]))
    return OneWriteStep(None, text_of(spec), parse_eager_wft(reply), int(reply[5]))


def act_complete_wft_due_in(reply: Any) -> int | None:
    """The earliest new timer of a one-write step: the completion's or its commit's."""
    due = [act_complete_due_in(reply)]
    if isinstance(reply, list) and len(reply) > 4 and isinstance(reply[4], list):
        due.append(wft_complete_due_in(reply[4]))
    known = [d for d in due if d is not None and d >= 0]
    if known:
        return min(known)
    return None if None in due else due[0]
