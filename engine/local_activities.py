"""The replay machine's local-activity side (`workflow.execute_local_activity`).

A local activity runs in the worker that runs the workflow task, between two passes of
the same activation, and its outcome is recorded as a `MarkerRecorded` event
("core_local_activity"). The machine does no I/O, so it only asks:

- live, workflow code that awaits a local activity leaves a request (`local_requests`);
  when the activation has run as far as it can, the worker runs every request, then
  hands the outcomes back (`resolve_local_activities`): each one appends its marker
  command, and the code runs on, maybe asking for more, before the task is committed;
- replayed, the activation's recorded markers are noted first (`_note_local_markers`),
  and at the same point (the activation ran as far as it can) the pending requests are
  resolved from them, in the same order, so the commands come out as they did live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import commands as cmd
from engine import events as ev
from engine.codec import PayloadCodec
from engine.errors import ActivityError, NondeterminismError, PayloadError, from_failure


@dataclass(frozen=True)
class LocalActivityRequest:
    """What the worker needs to run a local activity: the function's registered name,
    its encoded arguments (a list) and its options (timeouts in ms, retry policy wire
    form, as for a remote activity)."""

    seq: int
    activity_type: str
    input: bytes
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalActivityOutcome:
    """How a local activity ended: `result` (encoded) or `failure` (a failure document),
    on attempt `attempt`."""

    seq: int
    attempt: int
    result: bytes = b""
    failure: dict[str, Any] | None = None


@dataclass(slots=True)
class _PendingLocal:
    request: LocalActivityRequest
    future: asyncio.Future[Any]
    convert: Callable[[Any], Any] | None


class LocalActivityMixin:
    """Scheduling local activities and resolving them, live or from markers."""

    codec: PayloadCodec
    loop: asyncio.AbstractEventLoop
    _commands: list[cmd.Command]
    _matching: bool
    _local_seq: int
    #: Requested and not resolved yet, by sequence number.
    _local_pending: dict[int, _PendingLocal]
    #: The markers of the activation being replayed, by local activity sequence number.
    _local_markers: dict[int, ev.MarkerRecorded]

    def schedule_local_activity(
        self,
        activity_type: str,
        args: Sequence[Any],
        options: dict[str, Any],
        convert: Callable[[Any], Any] | None = None,
    ) -> asyncio.Future[Any]:
        self._local_seq += 1
        seq = self._local_seq
        request = LocalActivityRequest(seq, activity_type, self.codec.encode(list(args)), options)
        future: asyncio.Future[Any] = self.loop.create_future()
        self._local_pending[seq] = _PendingLocal(request, future, convert)
        # Cancelled before it ran (live or replayed, at the same point): it is dropped
        # and records nothing, so both ways agree.
        future.add_done_callback(
            lambda f: self._local_pending.pop(seq, None) if f.cancelled() else None
        )
        return future

    def local_requests(self) -> list[LocalActivityRequest]:
        """The local activities the live activation waits for, in the order asked."""
        return [self._local_pending[s].request for s in sorted(self._local_pending)]

    def _resolve_local(self, outcome: LocalActivityOutcome) -> None:
        pending = self._local_pending.pop(outcome.seq)
        request = pending.request
        self._commands.append(
            cmd.RecordLocalActivityMarker(
                outcome.seq, request.activity_type, outcome.attempt, outcome.result,
                outcome.failure,
            )
        )
        if outcome.failure is not None:
            pending.future.set_exception(
                ActivityError(
                    f"local activity {request.activity_type} (id {outcome.seq}) failed",
                    activity_type=request.activity_type,
                    activity_id=outcome.seq,
                    attempt=outcome.attempt,
                    cause=from_failure(outcome.failure),
                )
            )
            return
        try:
            value = self.codec.decode(outcome.result)
            if pending.convert is not None:
                value = pending.convert(value)
            pending.future.set_result(value)
        except PayloadError as exc:
            pending.future.set_exception(exc)

    def _note_local_markers(self, recorded: Sequence[ev.Event]) -> None:
        """Before an activation is replayed: the local activity outcomes it recorded."""
        self._local_markers = {
            e.activity_id: e
            for e in recorded
            if isinstance(e, ev.MarkerRecorded)
            and e.marker_name == ev.LOCAL_ACTIVITY_MARKER_NAME
        }

    def _resolve_from_markers(self) -> bool:
        """Replay: resolve the pending local activities whose markers this activation
        recorded, as the worker did live. False when none could be."""
        if not self._matching:
            return False
        ready = [s for s in sorted(self._local_pending) if s in self._local_markers]
        for seq in ready:
            marker = self._local_markers.pop(seq)
            wanted = self._local_pending[seq].request.activity_type
            if marker.activity_type != wanted:
                raise NondeterminismError(
                    f"history event {marker.event_id} records local activity {seq} as "
                    f"{marker.activity_type!r} but workflow code asked for {wanted!r}"
                )
            self._resolve_local(
                LocalActivityOutcome(
                    seq, marker.attempt, marker.result, marker.failure or None
                )
            )
        return bool(ready)
