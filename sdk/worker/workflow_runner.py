"""Workflow tasks on the worker side: the sticky cache of machines, one activation per
task, and queries answered from the cache or by replay."""

from __future__ import annotations

import functools
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from engine.codec import PayloadCodec
from engine.errors import PayloadError, QueryFailedError, UnknownQueryError
from engine.machine import SignalInputError, WorkflowInfo, WorkflowMachine
from engine.updates import UpdateCalls, UpdateInputError
from sdk._definitions import WorkflowDefinition, update_validator
from sdk._payload_hints import PayloadHints, hints_of

log = structlog.get_logger("redurable.worker")


@functools.cache
def _signature(handler: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(handler)


@functools.cache
def _positional_arity(handler: Callable[..., Any]) -> tuple[int, float] | None:
    """How many positional arguments `handler` takes (at least, at most), when that
    alone decides whether a call with positional arguments binds: None when it has
    a keyword-only parameter without a default (no such call binds)."""
    low, high = 0, 0.0
    for param in _signature(handler).parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            high += 1
            if param.default is param.empty:
                low += 1
        elif param.kind is param.VAR_POSITIONAL:
            high = math.inf
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            return None
    return low, high


def _misfit(handler: Callable[..., Any], instance: Any, args: list[Any], kind: str) -> str | None:
    """Why `args` cannot be passed to `handler`, else None. Checked before the call, so a
    TypeError that the handler's own code raises is not taken for a bad call."""
    arity = _positional_arity(handler)
    # The instance and the arguments, counted: what Signature.bind would find, without
    # its cost on every signal (the message below still comes from bind).
    if arity is not None and arity[0] <= len(args) + 1 <= arity[1]:
        return None
    try:
        _signature(handler).bind(instance, *args)
    except TypeError as exc:
        return (
            f"{len(args)} argument(s) do not fit {kind} {handler.__name__}"
            f"{_signature(handler)}: {exc}"
        )
    return None


class DefinitionHooks:
    """Binds a workflow definition to one instance of its class for one machine."""

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self.instance: Any = None

    def start(self, args: list[Any]) -> Coroutine[Any, Any, Any]:
        # A PayloadError here (an argument that does not fit its hint) fails the
        # workflow task, naming the parameter; a fixed deploy then takes it.
        hints = hints_of(self.definition.run_fn, method=True)
        args = hints.decode_args(args)
        self.instance = self.definition.cls()
        coro = self.definition.run_fn(self.instance, *args)
        assert inspect.iscoroutine(coro)
        return coro

    def result(self, value: Any) -> Any:
        return hints_of(self.definition.run_fn, method=True).encode_result(value)

    def signal(self, name: str, args: list[Any]) -> Coroutine[Any, Any, Any] | None:
        handler, args = self.signal_call(name, args)
        result = handler(self.instance, *args)
        return result if inspect.iscoroutine(result) else None

    def signal_call(self, name: str, args: list[Any]) -> tuple[Callable[..., Any], list[Any]]:
        """The handler of signal `name` and its arguments, converted; SignalInputError
        when the workflow cannot take it (the signal is dropped)."""
        handler = self.definition.signals.get(name)
        if handler is None:
            known = ", ".join(sorted(self.definition.signals)) or "none"
            raise SignalInputError(
                f"workflow {self.definition.name} has no signal handler named {name!r} "
                f"(handlers: {known})"
            )
        misfit = _misfit(handler, self.instance, args, "handler")
        if misfit is not None:
            raise SignalInputError(misfit)
        try:
            return handler, hints_of(handler, method=True).decode_args(args)
        except PayloadError as exc:
            raise SignalInputError(str(exc)) from None

    def query(self, name: str, args: list[Any]) -> Any:
        handler = self.definition.queries.get(name)
        if handler is None:
            raise UnknownQueryError(name, sorted(self.definition.queries))
        if self.instance is None:
            # No activation has run yet: answer from the freshly constructed state.
            self.instance = self.definition.cls()
        misfit = _misfit(handler, self.instance, args, "query handler")
        if misfit is not None:
            raise QueryFailedError(misfit)
        hints = hints_of(handler, method=True)
        try:
            args = hints.decode_args(args)
        except PayloadError as exc:
            raise QueryFailedError(str(exc)) from None
        # A result that does not fit the annotated return type raises PayloadError:
        # the caller gets it as the query's failure.
        return hints.encode_result(handler(self.instance, *args))

    def update(self, name: str, args: list[Any]) -> UpdateCalls:
        """The validator and the handler of an update, bound to these arguments;
        UpdateInputError (the update is rejected) when they cannot be called."""
        handler, args, hints = self.update_call(name, args)
        instance, validator = self.instance, update_validator(handler)

        def validate() -> None:
            assert validator is not None
            validator(instance, *args)

        async def run() -> Any:
            result = handler(instance, *args)
            if inspect.isawaitable(result):
                result = await result
            return hints.encode_result(result)

        return (validate if validator is not None else None), run

    def update_call(
        self, name: str, args: list[Any]
    ) -> tuple[Callable[..., Any], list[Any], PayloadHints]:
        """The handler of update `name`, its arguments converted, and its hints;
        UpdateInputError when the workflow cannot take it."""
        handler = self.definition.updates.get(name)
        if handler is None:
            known = ", ".join(sorted(self.definition.updates)) or "none"
            raise UpdateInputError(
                f"update handler for {name!r} expected but not found in workflow "
                f"{self.definition.name} (known updates: {known})")
        misfit = _misfit(handler, self.instance, args, "update handler")
        if misfit is not None:
            raise UpdateInputError(misfit)
        hints = hints_of(handler, method=True)
        try:
            args = hints.decode_args(args)
        except PayloadError as exc:
            raise UpdateInputError(str(exc)) from None
        return handler, args, hints



@dataclass
class CachedRun:
    machine: WorkflowMachine
    #: Stream id of the last history entry the machine consumed.
    cursor: bytes | None = None
    busy: bool = False
    #: The last event id a commit of ours left the machine at (-1: none yet): the
    #: machine is at the history's end as far as we know while its last_event_id is
    #: this (an activation since, not committed yet, moved it on).
    committed_id: int = -1
    #: The server's time of that commit (ms; 0: unknown): the history's last event's,
    #: a floor for a one-write step's code time (the Lua refuses a time before it).
    committed_ms: int = 0
    #: A one-write activity step ran the machine ahead and is in flight: nothing else
    #: may use it (Activations.one_write; the reply drops or commits it).
    ahead: bool = False


def new_machine(
    definition: WorkflowDefinition,
    workflow_id: str,
    run_id: str,
    task_queue: str,
    codec: PayloadCodec,
    attempt: int = 1,
) -> WorkflowMachine:
    info = WorkflowInfo(workflow_id, run_id, definition.name, task_queue, attempt)
    # A worker with workflow interceptors gives definitions that make their own hooks
    # (sdk/worker/interception.py).
    make_hooks = getattr(definition, "make_hooks", None)
    hooks = make_hooks() if make_hooks is not None else DefinitionHooks(definition)
    return WorkflowMachine(info, hooks, codec)


class StickyCache:
    """LRU of workflow machines, so a new event costs one activation, not a replay."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._runs: OrderedDict[str, CachedRun] = OrderedDict()
        #: Workflows let go to make room, not yet told to Redis: their next task should
        #: go to any worker rather than come back here for a replay (WorkflowTasks).
        self.let_go: list[str] = []

    def get(self, workflow_id: str, run_id: str) -> CachedRun | None:
        run = self._runs.get(workflow_id)
        if run is None or run.machine.info.run_id != run_id:
            return None
        self._runs.move_to_end(workflow_id)
        return run

    def put(self, workflow_id: str, run: CachedRun) -> None:
        self._runs[workflow_id] = run
        self._runs.move_to_end(workflow_id)
        while len(self._runs) > self.capacity:
            oldest, entry = next(iter(self._runs.items()))
            if entry.busy:
                break
            del self._runs[oldest]
            self.let_go.append(oldest)

    def evict(self, workflow_id: str) -> None:
        self._runs.pop(workflow_id, None)

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, workflow_id: str) -> bool:
        return workflow_id in self._runs

