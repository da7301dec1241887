"""Running Redis Function calls: one alone, several in one pipeline round trip, and
with a durability wait (WAITAOF/WAIT) on the connection that made them."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import monotonic, perf_counter
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.durability import Durability
from engine.errors import DurabilityError
from engine.functions import LibraryMissingError, load_library, missing_function
from engine.library import versioned_names
from engine.resp import RespPool

log = structlog.get_logger("redurable.store")
Arg = bytes | str | int
#: Functions that may add a timer that falls due soon (engine/lua). A worker's timer
#: loop sleeps until the earliest due time it has seen: the calls of its own process
#: that may have put an earlier one in wake it (FunctionCaller.timer_listeners).
#: (rd_act_heartbeat only pushes a heartbeat timeout later; rd_fire_timers answers
#: with the next due time itself.) A call whose reply tells when the earliest timer it
#: added falls due (Call.timer_due_in) wakes the loop only if that is before the loop's
#: own next scan.
SETS_TIMERS = frozenset(
    {"rd_wft_start", "rd_wft_complete", "rd_wft_fail", "rd_act_start", "rd_act_complete",
     "rd_act_complete_wft", "rd_act_fail_wft", "rd_cron_next", "rd_handoff"}
)


@dataclass(frozen=True)
class TaskRef:
    """One entry of a task stream: what a worker holds, completes or hands back."""

    stream: str
    msg_id: str


@dataclass(frozen=True)
class Call:
    """One FCALL, ready to run alone or in a pipeline."""

    #: The function's plain name (`rd_start`): FunctionCaller sends it as this library
    #: version's name (engine/library.py), so metrics and checks never see a version.
    function: str
    keys: Sequence[str]
    args: Sequence[Arg]
    #: The task entry the call is about, so that a worker learns which entry a reply
    #: settles from this, never from the function's argument positions.
    task: TaskRef | None = None
    #: False when the caller knows that this call of a SETS_TIMERS function adds no
    #: timer the timer loop must wake for (a workflow task completion that carries no
    #: command): no nudge, hence no timer scan after every lone step of a busy worker.
    may_set_timers: bool = True
    #: Reads from the call's reply how many ms after the call the earliest timer it
    #: added falls due (server-measured), NO_TIMER_ADDED when it added none, None when
    #: the reply does not tell. Unset: the timer loop must assume an earlier timer.
    timer_due_in: Callable[[Any], int | None] | None = None


#: Call.timer_due_in's answer for a call that added no timer.
NO_TIMER_ADDED = -1


def due_in_slot(slot: int) -> Callable[[Any], int | None]:
    """A Call.timer_due_in reading the reply's `slot`: ms until the earliest timer the
    call added falls due (a reply other than "ok" wrote no timer: "stale", "retry",
    "dead"). A reply too short to have the slot (a library before it) tells nothing."""

    def due_in(reply: Any) -> int | None:
        if not isinstance(reply, list | tuple) or not reply:
            return None
        if text_of(reply[0]) != "ok":
            return NO_TIMER_ADDED
        return int(reply[slot]) if len(reply) > slot else None

    return due_in


def text_of(value: Any) -> str:
    """A reply value as text (bytes from the server, or already a str or a number)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs_of(flat: Sequence[Any]) -> dict[bytes, bytes]:
    """Fields of a stream entry as a Lua reply holds them (a flat list), as a dict."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def unwrap(reply: Any) -> Any:
    """A reply as it came; an error reply (which call_many leaves in its slot) raised."""
    if isinstance(reply, Exception):
        raise reply
    return reply


class FunctionCaller:
    """`fast`, when given, carries the calls; without it (fakeredis in unit tests)
    they go through redis-py."""

    def __init__(
        self, redis: Redis, fast: RespPool | None = None, durability: Durability | None = None
    ) -> None:
        self.redis = redis
        self.fast = fast
        #: When set, every transition is followed by a WAITAOF/WAIT on its connection.
        self.durability = durability
        #: Called after each call of a SETS_TIMERS function (sdk/worker/timers.py) with
        #: the time.monotonic() at which the earliest timer it added falls due, None
        #: when unknown (not called when the replies say no timer was added).
        self.timer_listeners: list[Callable[[float | None], None]] = []
        #: Told of each call or pipeline (the calls, seconds, error replies) when set:
        #: the sdk's request metrics (sdk/_metrics.py).
        self.call_observer: Callable[[Sequence[Call], float, int], None] | None = None
        #: Plain function name -> this library version's (engine/library.py).
        self._names = versioned_names()
        self._loading = asyncio.Lock()

    def _timers_may_have_changed(
        self, calls: Sequence[Call], replies: Sequence[Any], sent_at: float
    ) -> None:
        """`replies`: those known (an error, or a missing slot, tells nothing);
        `sent_at`: monotonic() before the calls went out, so that a due time read from
        a reply errs early, never late."""
        if not self.timer_listeners:
            return
        due = math.inf  # -inf: unknown
        for i, c in enumerate(calls):
            if c.function not in SETS_TIMERS or not c.may_set_timers:
                continue
            in_ms = None
            if c.timer_due_in is not None and i < len(replies):
                reply = replies[i]
                if not isinstance(reply, BaseException):
                    in_ms = c.timer_due_in(reply)
            if in_ms is None:
                due = -math.inf
                break
            if in_ms != NO_TIMER_ADDED:
                due = min(due, sent_at + in_ms / 1000)
        if due == math.inf:
            return
        for listener in list(self.timer_listeners):
            listener(None if due == -math.inf else due)

    async def call(self, call: Call) -> Any:
        """One transition; with a durability mode, DurabilityError when it was applied
        but not confirmed durable in time."""
        started = perf_counter()
        sent_at = monotonic()
        errors = 1
        replies: list[Any] = []
        try:
            try:
                reply = await self._call(call)
            except ResponseError as exc:
                if not missing_function(exc) or not await self._load_library():
                    raise
                reply = await self._call(call)  # not run the first time: safe to repeat
            errors = 0
            replies.append(reply)
            return reply
        finally:
            # Also after an error: the call may have been applied all the same.
            self._timers_may_have_changed([call], replies, sent_at)
            if self.call_observer is not None:
                self.call_observer([call], perf_counter() - started, errors)

    async def _call(self, call: Call) -> Any:
        if self.durability is not None:
            return unwrap((await self._call_batch([call], self.durability, strict=True))[0])
        if self.fast is not None:
            return await self.fast.execute("FCALL", self._names[call.function], len(call.keys),
                                           *call.keys, *call.args)
        return await self.redis.fcall(self._names[call.function], len(call.keys), *call.keys,
                                      *call.args)

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one pipeline round trip; an error reply comes back as the
        exception object in its slot rather than failing the others."""
        started = perf_counter()
        sent_at = monotonic()
        errors = len(calls)
        replies: list[Any] = []
        try:
            replies = await self._call_many(calls)
            errors = sum(isinstance(r, Exception) for r in replies)
            if errors and any(map(missing_function, replies)) and await self._load_library():
                replies = await self._again_where_missing(calls, replies)
                errors = sum(isinstance(r, Exception) for r in replies)
            return replies
        finally:
            self._timers_may_have_changed(calls, replies, sent_at)
            if self.call_observer is not None and calls:
                self.call_observer(calls, perf_counter() - started, errors)

    async def call_many_then(
        self,
        calls: Sequence[Call],
        on_replies: Callable[[list[Any]], None],
        *command: Arg,
    ) -> Any:
        """Calls as `call_many`, then `command` (which may block: a worker's next read),
        sent together on one connection when the plain fast path carries them: one round
        trip instead of two. `on_replies` gets the calls' replies as soon as they are in,
        before `command` answers; returns the reply of `command`. With a durability
        mode the wait follows the calls on that same connection, before `command`. On a
        cluster, or through redis-py, the calls run first (call_many), then `command`."""
        fast = self.fast
        assert fast is not None, "a blocking command needs the fast path"
        if type(fast) is not RespPool or not calls:
            # A cluster routes the calls by slot and the command by its own rules.
            on_replies(await self.call_many(calls) if calls else [])
            return await fast.execute_blocking(*command)
        durability = self.durability
        names = self._names
        commands: list[tuple[Any, ...]] = [
            ("FCALL", names[c.function], len(c.keys), *c.keys, *c.args) for c in calls]
        if durability is not None:
            commands.append(durability.command())
        started = perf_counter()
        sent_at = monotonic()
        #: Replies that found no function: run again (reloaded) once `command` is back.
        missing: list[list[Any]] = []

        def first(replies: list[Any]) -> None:
            if durability is not None:
                try:
                    durability.check(replies.pop())
                except DurabilityError as exc:  # as call_many (strict=False) does
                    log.warning("durability_not_confirmed", error=str(exc))
            if any(map(missing_function, replies)):
                missing.append(replies)
                return
            self._settled(calls, replies, sent_at, started, on_replies)

        reply = await fast.execute_then_blocking(commands, first, *command)
        if missing:
            replies = missing[0]
            if await self._load_library():
                replies = await self._again_where_missing(calls, replies)
            self._settled(calls, replies, sent_at, started, on_replies)
        return reply

    def _settled(
        self,
        calls: Sequence[Call],
        replies: list[Any],
        sent_at: float,
        started: float,
        on_replies: Callable[[list[Any]], None],
    ) -> None:
        """What call_many does with its replies, for call_many_then."""
        self._timers_may_have_changed(calls, replies, sent_at)
        if self.call_observer is not None:
            errors = sum(isinstance(r, Exception) for r in replies)
            self.call_observer(calls, perf_counter() - started, errors)
        on_replies(replies)

    async def _load_library(self) -> bool:
        """This version of the library, added to a server that answered "Function not
        found" (it lost its functions, or an admin's prune removed this version while
        this process was not seen): True when the calls may run again. A cluster's
        router does this per primary itself (engine/resp_cluster.py)."""
        async with self._loading:
            try:
                await load_library(self.redis)
            except LibraryMissingError as exc:  # an ACL user: the admin's step
                log.error("function_library_missing", error=str(exc))
                return False
        log.warning("function_library_reloaded")
        return True

    async def _again_where_missing(self, calls: Sequence[Call], replies: list[Any]) -> list[Any]:
        """The calls that found no function run again (they did not run at all)."""
        again = [i for i, reply in enumerate(replies) if missing_function(reply)]
        out = list(replies)
        for i, reply in zip(again, await self._call_many([calls[i] for i in again]),
                            strict=True):
            out[i] = reply
        return out

    async def _call_many(self, calls: Sequence[Call]) -> list[Any]:
        if not calls:
            return []
        if self.durability is not None:
            return await self._call_batch(calls, self.durability, strict=False)
        if self.fast is not None:
            names = self._names
            return await self.fast.execute_many(
                [("FCALL", names[c.function], len(c.keys), *c.keys, *c.args) for c in calls])
        if len(calls) == 1:
            try:
                return [await self._call(calls[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.redis.pipeline(transaction=False)
        for c in calls:
            pipe.fcall(self._names[c.function], len(c.keys), *c.keys, *c.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _call_batch(
        self, calls: Sequence[Call], durability: Durability, *, strict: bool
    ) -> list[Any]:
        """Calls, then the durability wait on the same connection (it covers every
        earlier write of that connection). When the wait falls short and `strict`, each
        reply slot holds the DurabilityError (the writes happened, their durability is
        unknown: a client must hear it). Workers pass strict=False and go on: a
        transition lost in a crash loses its XACK with it, so its task runs again."""
        commands: list[tuple[Any, ...]] = [
            ("FCALL", self._names[c.function], len(c.keys), *c.keys, *c.args) for c in calls
        ]
        commands.append(durability.command())
        if self.fast is not None:
            replies = await self.fast.execute_many(commands)
        else:
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies = list(await pipe.execute(raise_on_error=False))
        try:
            durability.check(replies[-1])
        except DurabilityError as exc:
            if strict:
                return [r if isinstance(r, Exception) else exc for r in replies[:-1]]
            log.warning("durability_not_confirmed", error=str(exc))
        return list(replies[:-1])

    async def _worker_call(self, call: Call) -> Any:
        """One call of a worker's own: like `call`, but a durability wait that falls
        short is logged, not raised (as in call_many: see _call_batch)."""
        return unwrap((await self.call_many([call]))[0])
