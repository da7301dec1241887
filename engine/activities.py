"""What the replay machine keeps about the activities workflow code scheduled: their
futures, how cancelling one behaves (`ActivityCancellationType`, as temporalio's), and
the errors their awaits raise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from engine import commands as cmd
from engine import events as ev
from engine.codec import PayloadCodec
from engine.errors import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    PayloadError,
    from_failure,
)
from engine.limits import MAX_PENDING_ACTIVITIES


class ActivityCancellationType(IntEnum):
    """What cancelling an activity's future does (temporalio's names and numbers).
    In every case its await then raises `ActivityError(cause=CancelledError)`."""

    #: Ask for the activity to be cancelled and resolve the future at once.
    TRY_CANCEL = 0
    #: Ask for the activity to be cancelled and resolve the future when its attempt has
    #: ended: with the cancellation, or with the result or failure it ended with anyway.
    WAIT_CANCELLATION_COMPLETED = 1
    #: Resolve the future at once and let the activity run on; its outcome is ignored.
    ABANDON = 2


class CancelOwner(Protocol):
    def cancel_activity(self, seq: int) -> bool: ...


class ActivityFuture(asyncio.Future[Any]):
    """An activity's future. `cancel()` (also the one a task awaiting it passes on when
    it is cancelled) goes to the machine, which resolves the future with an
    `ActivityError` instead of cancelling it, as temporalio does, so that code catching
    `ActivityError` goes on. Activations recorded before that behaviour cancel it."""

    def __init__(self, owner: CancelOwner, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._owner = owner
        self._seq = seq

    def cancel(self, msg: Any | None = None) -> bool:
        if self.done():
            return False
        if self._owner.cancel_activity(self._seq):
            # True tells a cancelled task that awaits this future to wait for it:
            # it resolves now or, for WAIT_CANCELLATION_COMPLETED, when the attempt ends.
            return True
        return super().cancel(msg)


@dataclass(slots=True)
class PendingActivity:
    future: asyncio.Future[Any]
    activity_type: str
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL
    #: Cancelled with WAIT_CANCELLATION_COMPLETED: the future waits for the attempt.
    cancel_requested: bool = False
    #: Turns the decoded result into what the future gives (the sdk's type-hint
    #: conversion); may raise PayloadError. None: the decoded value as it is.
    convert: Callable[[Any], Any] | None = None
    #: The options its ActivityTaskScheduled records (retry policy, timeouts).
    options: dict[str, Any] | None = None


#: The failure an attempt cancelled at the workflow's request records (the bytes of
#: engine/lua/02_activities.lua's cancelled_failure()).
CANCELLED_FAILURE = (b'{"message":"activity cancelled","kind":"cancelled",'
                     b'"type":"CancelledError","non_retryable":true}')


def final_failure(pending: PendingActivity, attempt: int, payload: bytes,
                  failure: dict[str, Any]) -> bytes | None:
    """What the ActivityTaskFailed of a failed attempt records when its failure is the
    activity's last, as engine/lua/02_activities.lua's retry_delay decides it from the
    recorded options: `payload` (the failure's JSON), or CANCELLED_FAILURE for an
    attempt the workflow cancelled. None: a retry may follow, or only the server can
    tell (the schedule-to-close deadline: its clock's)."""
    err_type = failure.get("type")
    err_type = err_type if isinstance(err_type, str) else ""
    if pending.cancel_requested:
        return CANCELLED_FAILURE if err_type == "CancelledError" else payload
    retry = (pending.options or {}).get("retry") or {}
    max_attempts = retry.get("maximum_attempts") or 0
    if (failure.get("non_retryable") is True
            or (isinstance(max_attempts, int) and 0 < max_attempts <= attempt)
            or err_type in (retry.get("non_retryable_error_types") or ())):
        return payload
    return None


def cancelled_error(pending: PendingActivity, seq: int) -> ActivityError:
    return ActivityError(
        f"activity {pending.activity_type} (id {seq}) cancelled",
        activity_type=pending.activity_type,
        activity_id=seq,
        attempt=0,
        cause=CancelledError("activity cancelled"),
    )


def failed_error(
    pending: PendingActivity, event: ev.ActivityTaskFailed | ev.ActivityTaskTimedOut
) -> ActivityError:
    verb = "timed out" if isinstance(event, ev.ActivityTaskTimedOut) else "failed"
    return ActivityError(
        f"activity {pending.activity_type} (id {event.activity_id}) {verb}",
        activity_type=pending.activity_type,
        activity_id=event.activity_id,
        attempt=event.attempt,
        cause=from_failure(event.failure),
    )


def is_cancellation(exc: BaseException) -> bool:
    """temporalio's `is_cancelled_exception`: a cancellation, or an activity error
    caused by one (what an activity's or a child's await raises when the workflow is
    cancelled)."""
    if isinstance(exc, asyncio.CancelledError | CancelledError):
        return True
    return isinstance(exc, ActivityError | ChildWorkflowError) and isinstance(
        exc.cause, CancelledError
    )


def _resolve_cancelled(future: asyncio.Future[Any], error: ActivityError) -> None:
    future.set_exception(error)
    # Marked retrieved: code that cancels an activity need not await it, as with a
    # cancelled future. Else the loop reports "exception never retrieved" when the
    # future is collected, and that fails the activation at a time GC decides.
    future.exception()


class ActivityMixin:
    """The replay machine's activity side: scheduling, results, cancellation."""

    codec: PayloadCodec
    loop: asyncio.AbstractEventLoop
    _activity_seq: int
    _activities: dict[int, PendingActivity]
    _commands: list[cmd.Command]
    _flags: frozenset[ev.WorkflowLogicFlag]

    def schedule_activity(
        self,
        activity_type: str,
        args: Sequence[Any],
        task_queue: str,
        options: dict[str, Any],
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
        convert: Callable[[Any], Any] | None = None,
    ) -> asyncio.Future[Any]:
        if len(self._activities) >= MAX_PENDING_ACTIVITIES:
            # Raised before anything is recorded, the same way on replay.
            raise ApplicationError(
                f"cannot schedule activity {activity_type}: {len(self._activities)} "
                f"activities are pending, the limit is {MAX_PENDING_ACTIVITIES} (await some "
                "before scheduling more)",
                type="PendingActivityLimit",
                non_retryable=True,
            )
        self._activity_seq += 1
        seq = self._activity_seq
        payload = self.codec.encode(list(args))
        self._commands.append(
            cmd.ScheduleActivity(seq, activity_type, payload, task_queue, options)
        )
        future = ActivityFuture(self, seq, self.loop)
        self._activities[seq] = PendingActivity(future, activity_type, cancellation_type,
                                                convert=convert, options=options)
        future.add_done_callback(lambda f: self._activity_future_done(seq, f))
        return future

    def _activity_future_done(self, seq: int, future: asyncio.Future[Any]) -> None:
        # Only activations recorded without ACTIVITY_CANCEL_AS_ERROR cancel the future.
        if future.cancelled() and self._take_activity(seq) is not None:
            self._commands.append(cmd.RequestCancelActivity(seq))

    def cancel_activity(self, seq: int) -> bool:
        """Workflow code cancelled the future of activity `seq`. False: cancel the
        future itself (activations recorded before ACTIVITY_CANCEL_AS_ERROR)."""
        if ev.WorkflowLogicFlag.ACTIVITY_CANCEL_AS_ERROR not in self._flags:
            return False
        pending = self._activities.get(seq)
        if pending is None or pending.cancel_requested:
            return True  # asked before: the future waits for the attempt to end
        kind = pending.cancellation_type
        if kind != ActivityCancellationType.ABANDON:
            self._commands.append(cmd.RequestCancelActivity(seq))
        if kind == ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
            # Resolved by the event that records the attempt's end (engine/lua:
            # the activity is kept until its worker reports, or it times out).
            pending.cancel_requested = True
            return True
        self._take_activity(seq)
        _resolve_cancelled(pending.future, cancelled_error(pending, seq))
        return True

    def _take_activity(self, seq: int) -> PendingActivity | None:
        pending = self._activities.pop(seq, None)
        if not self._activities:
            # A dict keeps its table when emptied: a run parked after gathering 100
            # activities kept ~4.6 KB for nothing (scripts/bench/cache_memory.py).
            self._activities = {}
        return pending

    def _on_activity_completed(self, event: ev.ActivityTaskCompleted) -> None:
        pending = self._take_activity(event.activity_id)
        if pending is None or pending.future.done():
            return  # cancelled by the workflow before the result arrived
        try:
            result = self.codec.decode(event.result)
            if pending.convert is not None:
                result = pending.convert(result)
            pending.future.set_result(result)
        except PayloadError as exc:
            pending.future.set_exception(exc)

    def _on_activity_failed(self, event: ev.ActivityTaskFailed | ev.ActivityTaskTimedOut) -> None:
        pending = self._take_activity(event.activity_id)
        if pending is None or pending.future.done():
            return
        if pending.cancel_requested:
            _resolve_cancelled(pending.future, failed_error(pending, event))
        else:
            pending.future.set_exception(failed_error(pending, event))

    def final_failure(self, seq: int, attempt: int, payload: bytes,
                      failure: dict[str, Any]) -> bytes | None:
        """engine.activities.final_failure for activity `seq` (None: not pending)."""
        pending = self._activities.get(seq)
        if pending is None or pending.future.done():
            return None
        return final_failure(pending, attempt, payload, failure)

    @property
    def pending_activity_count(self) -> int:
        return len(self._activities)
