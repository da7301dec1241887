"""The pure replay machine: history events in, commands out. No Redis, no clock.

History is a sequence of activations. Each one is: input events (activity results,
timer fires, signals, ...), then a `WorkflowTaskCompleted` boundary, then the command
events that the workflow code decided. The machine replays complete activations and
checks that the code issues the recorded commands again (else `NondeterminismError`);
the trailing inputs, which have no boundary yet, form the live activation whose
commands are new. The replay of complete activations is engine/replay.py; each other
side of the machine (activities, children, updates, ...) is a mixin of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
import uuid
from collections.abc import Callable, Coroutine, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from engine import commands as cmd
from engine import events as ev
from engine.activities import ActivityMixin, PendingActivity, is_cancellation
from engine.children import ChildMixin, _ChildState
from engine.codec import PayloadCodec
from engine.errors import (
    CodecKeyError,
    ContinueAsNewError,
    FailureError,
    PayloadError,
    to_failure,
)
from engine.local_activities import LocalActivityMixin, LocalActivityOutcome, _PendingLocal
from engine.loop import DeterministicLoop
from engine.patches import PatchMixin
from engine.replay import ReplayMixin
from engine.run_info import started_info
from engine.updates import UpdateMixin, UpdateRequest
from engine.visibility_machine import SearchAttributesMixin

# Re-exported: the sdk and users import them from here.
from engine.workflow_info import ParentInfo as ParentInfo
from engine.workflow_info import WorkflowInfo as WorkflowInfo

#: The replay behaviour flags new activations run with (every one this code knows), and
#: the text the worker records them as in the activation's WorkflowTaskCompleted.
CURRENT_FLAGS = frozenset(ev.WorkflowLogicFlag)
LOGIC_FLAGS = ev.encode_logic_flags(CURRENT_FLAGS)


class WorkflowHooks(Protocol):
    """What the machine needs from a workflow definition; the sdk supplies it."""

    def start(self, args: list[Any]) -> Coroutine[Any, Any, Any]: ...

    def signal(self, name: str, args: list[Any]) -> Coroutine[Any, Any, Any] | None: ...

    def query(self, name: str, args: list[Any]) -> Any: ...

    def result(self, value: Any) -> Any:
        """The run method's result as the codec's plain data (the sdk converts it
        following the return hint); raises PayloadError when it does not fit."""
        ...


class SignalInputError(Exception):
    """A signal the workflow cannot take: its arguments do not fit the handler, or no
    handler has its name. Raised by `WorkflowHooks.signal`; the signal is dropped with
    this reason, as Temporal drops a signal it cannot decode, and the workflow goes on
    (before, the workflow task failed on every retry, for ever)."""


class ActivationFailed(Exception):
    """Workflow code raised an error that fails the workflow task (not the workflow):
    a bug the user can fix and deploy; the task is retried."""


@dataclass(slots=True)
class _Condition:
    fn: Callable[[], bool]
    future: asyncio.Future[bool]


_current: contextvars.ContextVar[WorkflowMachine | None] = contextvars.ContextVar(
    "redurable_workflow_machine", default=None
)


def current_machine() -> WorkflowMachine:
    """The machine whose workflow code is running; raises outside workflow code."""
    machine = _current.get()
    if machine is None:
        raise RuntimeError("not in workflow code: this call is only allowed inside a workflow")
    return machine


#: `_firing` between activations and `_patches_in_history` until a patch marker:
#: shared, so a cached run keeps no empty set (each is 216 bytes; since Python 3.10
#: `frozenset()` is not one shared object either).
_NONE_FIRING: frozenset[int] = frozenset()
_NO_PATCHES: frozenset[str] = frozenset()


@dataclass(slots=True)
class WorkflowMachine(ActivityMixin, LocalActivityMixin, PatchMixin, UpdateMixin,
                      SearchAttributesMixin, ChildMixin, ReplayMixin):
    """A cached run keeps one machine: its state is in slots, not an instance dict
    (~1.3 KiB less a run; docs/scaling.md "Worker memory"). The mixins declare no
    slots; the state below is set by __post_init__."""

    info: WorkflowInfo
    hooks: WorkflowHooks
    codec: PayloadCodec
    #: Id of the last history event this machine has consumed.
    last_event_id: int = 0
    replaying: bool = False
    closed: bool = False
    loop: DeterministicLoop = field(init=False)
    _random: random.Random | None = field(init=False, repr=False, compare=False)
    _now_ms: int = field(init=False, repr=False, compare=False)
    _commands: list[cmd.Command] = field(init=False, repr=False, compare=False)
    _activity_seq: int = field(init=False, repr=False, compare=False)
    _timer_seq: int = field(init=False, repr=False, compare=False)
    _activities: dict[int, PendingActivity] = field(init=False, repr=False, compare=False)
    _child_state: _ChildState = field(init=False, repr=False, compare=False)
    _local_seq: int = field(init=False, repr=False, compare=False)
    _local_pending: dict[int, _PendingLocal] = field(init=False, repr=False, compare=False)
    _local_markers: dict[int, ev.MarkerRecorded] = field(init=False, repr=False, compare=False)
    _flags: frozenset[ev.WorkflowLogicFlag] = field(init=False, repr=False, compare=False)
    _timers: dict[int, asyncio.TimerHandle] = field(init=False, repr=False, compare=False)
    _conditions: list[_Condition] = field(init=False, repr=False, compare=False)
    _main: asyncio.Task[Any] | None = field(init=False, repr=False, compare=False)
    _handlers: list[asyncio.Task[Any]] = field(init=False, repr=False, compare=False)
    _close_emitted: bool = field(init=False, repr=False, compare=False)
    _firing: Set[int] = field(init=False, repr=False, compare=False)
    cancel_requested: bool = field(init=False, repr=False, compare=False)
    _patch_answers: dict[str, bool] = field(init=False, repr=False, compare=False)
    _patches_in_history: frozenset[str] = field(init=False, repr=False, compare=False)
    _matching: bool = field(init=False, repr=False, compare=False)
    _in_query: bool = field(init=False, repr=False, compare=False)
    _update_inbox: list[tuple[UpdateRequest, bool]] = field(init=False, repr=False, compare=False)
    #: The input event being applied (its headers: sdk/interceptor.py).
    input_event: ev.Event | None = field(init=False, repr=False, compare=False)
    applying_update_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.loop = DeterministicLoop(self)  # type: ignore[abstract]  # no I/O methods
        self._random = None
        self._now_ms = 0
        self._commands = []
        self._activity_seq = 0
        self._timer_seq = 0
        self._activities = {}
        self._child_state = _ChildState()
        self._local_seq = 0
        self._local_pending = {}
        self._local_markers = {}
        self._flags = CURRENT_FLAGS
        self._timers = {}
        self._conditions = []
        self._main = None
        self._handlers = []
        self._close_emitted = False
        self._firing = _NONE_FIRING
        self.cancel_requested = False
        self._patch_answers = {}
        self._patches_in_history = _NO_PATCHES
        self._matching = False
        self._in_query = False
        self._update_inbox = []
        self.input_event = None
        self.applying_update_id = ""

    # --- driving ----------------------------------------------------------------------
    def activate(
        self, events: Sequence[ev.Event], now_ms: int, updates: Sequence[UpdateRequest] = ()
    ) -> list[cmd.Command]:
        """Replay every complete activation in `events`, then run the trailing inputs
        live, then the `updates` admitted for this task, and return their commands.
        `now_ms` is the live activation's time."""
        self._check_contiguous(events)
        pos = self._replay_complete(events)
        self._update_inbox = [(update, True) for update in updates]
        inputs = list(events[pos:])
        self.replaying = False
        self._now_ms = max(self._now_ms, now_ms)
        commands = self._run_activation(inputs, CURRENT_FLAGS)
        if inputs:
            self.last_event_id = inputs[-1].event_id
        return commands

    def resolve_local_activities(
        self, outcomes: Sequence[LocalActivityOutcome]
    ) -> list[cmd.Command]:
        """The live activation's local activities ended (the worker ran `local_requests`):
        record their markers, run the code on, and return the activation's commands so
        far (those of `activate` included). The code may ask for more local activities."""
        token = _current.set(self)
        try:
            for outcome in sorted(outcomes, key=lambda o: o.seq):
                self._resolve_local(outcome)
            self._drain()
            self._emit_close_if_done()
        finally:
            _current.reset(token)
        return self._commands

    def replay(self, events: Sequence[ev.Event]) -> None:
        """Replay complete activations only (for queries); trailing inputs stay unread."""
        self._check_contiguous(events)
        self._replay_complete(events)

    def preview(self, events: Sequence[ev.Event], now_ms: int) -> None:
        """Replay `events`, then apply their trailing inputs too, dropping the commands:
        a throwaway machine for a query that must see inputs accepted but not applied
        yet. Run as a replay (the logger stays silent): the activation that counts is
        the workflow task's, which may decide otherwise (its time, events after these)."""
        self._check_contiguous(events)
        inputs = list(events[self._replay_complete(events) :])
        if self.closed or not inputs:
            return
        self.replaying = True
        self._now_ms = max(self._now_ms, now_ms)
        self._run_activation(inputs, CURRENT_FLAGS)
        self.last_event_id = inputs[-1].event_id

    def committed(self, last_event_id: int) -> None:
        """The live activation's commands were written; its last event has this id."""
        self.last_event_id = last_event_id

    def query(self, name: str, args: list[Any]) -> Any:
        token = _current.set(self)
        # A query runs on the cached machine between activations: a handler that draws
        # from workflow.random()/uuid4() must not move the source, or the next
        # activation draws other numbers than a replay of the same history does.
        random_state = self.random.getstate()
        self._in_query = True
        try:
            return self.hooks.query(name, args)
        finally:
            self._in_query = False
            self.random.setstate(random_state)
            _current.reset(token)

    @property
    def now_ms(self) -> int:
        return self._now_ms

    @property
    def random(self) -> random.Random:
        """workflow.random(): seeded by the run id, made when first used (seeding hashes
        the id: ~2% of a step's worker CPU, and most workflows never draw from it)."""
        if self._random is None:
            self._random = random.Random(self.info.run_id)
        return self._random

    # --- one activation ---------------------------------------------------------------
    def _run_activation(
        self, inputs: list[ev.Event], flags: frozenset[ev.WorkflowLogicFlag]
    ) -> list[cmd.Command]:
        self._commands = []
        self._flags = flags
        step_per_input = ev.WorkflowLogicFlag.STEP_PER_INPUT in flags
        # Timers that fire later in this activation: cancelling one of them (its waiter
        # was satisfied by an earlier input) needs no command, the fire is recorded.
        firing = {e.timer_id for e in inputs if isinstance(e, ev.TimerFired)}
        self._firing = firing
        token = _current.set(self)
        try:
            for event in inputs:
                if isinstance(event, ev.TimerFired):
                    firing.discard(event.timer_id)
                self._apply(event)
                if step_per_input:
                    self._drain()
            self._apply_updates()
            self._drain()
            while self._resolve_from_markers():  # replay only: local activities
                self._drain()
            self._emit_close_if_done()
        finally:
            _current.reset(token)
            self._firing = _NONE_FIRING
            # A cached run keeps no decoded event (the start's holds its input).
            self.input_event = None
        return self._commands

    def _apply(self, event: ev.Event) -> None:
        self.input_event = event
        match event:
            case ev.WorkflowExecutionStarted():
                self._on_started(event)
            case ev.ActivityTaskCompleted():
                self._on_activity_completed(event)
            case ev.ActivityTaskFailed() | ev.ActivityTaskTimedOut():
                self._on_activity_failed(event)
            case ev.TimerFired():
                self._on_timer_fired(event)
            case ev.WorkflowExecutionSignaled():
                self._on_signaled(event)
            case ev.WorkflowExecutionCancelRequested():
                self._on_cancel_requested()
            case ev.WorkflowExecutionTerminated() | ev.WorkflowExecutionTimedOut():
                self.closed = True
            case _:
                self._apply_child_event(event)

    def _on_started(self, event: ev.WorkflowExecutionStarted) -> None:
        self.info = started_info(self.info, event)
        args = self._decode_args(event.input, "workflow input")
        self._main = self.loop.create_task(self.hooks.start(args), name="workflow-main")

    def _on_timer_fired(self, event: ev.TimerFired) -> None:
        handle = self._timers.pop(event.timer_id, None)
        if handle is not None:
            self.loop.fire(handle)

    def _on_signaled(self, event: ev.WorkflowExecutionSignaled) -> None:
        try:
            args = self._decode_args(event.input, "its input")
        except CodecKeyError:
            raise  # a worker with the codec's key can read it: fail the task, retried
        except PayloadError as exc:
            self._drop_signal(event, str(exc))
            return
        try:
            handler = self.hooks.signal(event.signal_name, args)
        except SignalInputError as exc:
            self._drop_signal(event, str(exc))
            return
        except Exception as exc:
            # A sync handler raised while it was applied. Hand its error to the same
            # path as an async handler's (a FailureError fails the workflow, anything
            # else the task, naming the handler); it used to escape `activate` and
            # fail the task even for a FailureError.
            handler = _raise(exc)
        if handler is not None:
            self._handlers.append(self.loop.create_task(handler, name=event.signal_name))

    def _drop_signal(self, event: ev.WorkflowExecutionSignaled, reason: str) -> None:
        # Dropped the same way on every replay (same code, same history); noted only
        # when it happens live, so the note is written once.
        if not self.replaying:
            self._commands.append(
                cmd.RecordSignalDropped(event.event_id, event.signal_name, reason)
            )

    def _on_cancel_requested(self) -> None:
        self.cancel_requested = True
        if self._main is not None and not self._main.done():
            self._main.cancel()

    def _decode_args(self, payload: bytes, what: str) -> list[Any]:
        args = self.codec.decode(payload)
        if not isinstance(args, list):
            raise PayloadError(f"{what} must encode a list of arguments")
        return args

    def _drain(self) -> None:
        while True:
            self.loop.run_ready()
            progressed = False
            for condition in list(self._conditions):
                if condition.future.done():
                    self._conditions.remove(condition)
                    continue
                try:
                    satisfied = condition.fn()
                except Exception as exc:  # the waiting code sees the error
                    condition.future.set_exception(exc)
                    satisfied = False
                    progressed = True
                if satisfied:
                    condition.future.set_result(True)
                    self._conditions.remove(condition)
                    progressed = True
            if not progressed and not self.loop.has_ready():
                return

    def _emit_close_if_done(self) -> None:
        if self._close_emitted:
            # The run is closed (a replayed close, or this activation's). The failed
            # handler that closed it stays in _handlers: without this check an
            # activation after the replay of such a history issued a second close.
            return
        for handler in self._handlers:
            if handler.done() and not handler.cancelled() and handler.exception() is not None:
                exc = handler.exception()
                assert exc is not None
                if not isinstance(exc, FailureError):
                    raise ActivationFailed(f"signal handler {handler.get_name()} raised") from exc
                if self._main is not None and not self._main.done():
                    self._main.cancel()  # a handler's FailureError fails the workflow
                    self._drain()
                self._append_close(cmd.FailWorkflow(to_failure(exc)))
                return
        self._handlers = [h for h in self._handlers if not h.done()]
        if self.loop.errors:
            context = self.loop.errors.pop(0)
            raise ActivationFailed(str(context.get("message", "workflow code error"))) from (
                context.get("exception")
            )
        main = self._main
        if main is None or not main.done() or self._close_emitted:
            return
        if main.cancelled():
            self._append_close(cmd.CancelWorkflow())
            return
        exc = main.exception()
        if exc is None:
            try:
                # Converted now, not when the run method returned: after a dropped
                # close, handlers that ran since may have changed the returned object.
                result = self.codec.encode(self.hooks.result(main.result()))
            except PayloadError as perr:
                self._append_close(cmd.FailWorkflow(to_failure(perr)))
                return
            self._append_close(cmd.CompleteWorkflow(result))
        elif isinstance(exc, ContinueAsNewError):
            payload = self.codec.encode(list(exc.input))
            memo = b"" if exc.memo is None else self.codec.encode(exc.memo)
            self._append_close(cmd.ContinueAsNew(payload, self.uuid4().hex, memo,
                                                 exc.task_queue, exc.workflow_type))
        elif isinstance(exc, asyncio.CancelledError) or (
            self.cancel_requested
            and ev.WorkflowLogicFlag.ACTIVITY_CANCEL_AS_ERROR in self._flags
            and is_cancellation(exc)
        ):
            # Cancelled while it awaited an activity, the code let the activity's
            # ActivityError(cause=CancelledError) through: the workflow is cancelled.
            self._append_close(cmd.CancelWorkflow())
        elif isinstance(exc, FailureError):
            self._append_close(cmd.FailWorkflow(to_failure(exc)))
        else:
            raise ActivationFailed(f"workflow raised {type(exc).__name__}: {exc}") from exc

    def _append_close(self, command: cmd.Command) -> None:
        self._commands.append(command)
        self._close_emitted = True

    # --- called by workflow code (through sdk.workflow) --------------------------------
    def start_timer(self, delay: float, handle: asyncio.TimerHandle) -> int:
        self._timer_seq += 1
        seq = self._timer_seq
        self._commands.append(cmd.StartTimer(seq, max(1, math.ceil(delay * 1000))))
        self._timers[seq] = handle
        return seq

    def cancel_timer(self, seq: int) -> None:
        if self._timers.pop(seq, None) is not None and seq not in self._firing:
            self._commands.append(cmd.CancelTimer(seq))

    def wait_for(self, fn: Callable[[], bool]) -> asyncio.Future[bool]:
        """A future resolved when `fn()` becomes true (checked after every step)."""
        future: asyncio.Future[bool] = self.loop.create_future()
        self._conditions.append(_Condition(fn, future))
        return future

    def now_seconds(self) -> float:
        return self._now_ms / 1000.0

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.random.getrandbits(128), version=4)


async def _raise(exc: BaseException) -> NoReturn:
    raise exc
