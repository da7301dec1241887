"""Frozen definitions attached by the decorators, and their eager validation."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from engine.validate import check_name

_T = TypeVar("_T")
_RUN = "__redurable_run__"
_WORKFLOW = "__redurable_workflow__"
_ACTIVITY = "__redurable_activity__"


@dataclass(frozen=True)
class _HandlerKind:
    """Signal and query handlers are marked, named and collected the same way."""

    kind: str
    #: Attribute the decorator sets on the method: its wire name.
    marker: str


_SIGNAL = _HandlerKind("signal", "__redurable_signal__")
_QUERY = _HandlerKind("query", "__redurable_query__")
_UPDATE = _HandlerKind("update", "__redurable_update__")
#: Attribute of an update handler: its validator (`@handler.validator`), if any.
UPDATE_VALIDATOR = "__redurable_update_validator__"


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    cls: type
    run_fn: Callable[..., Any]
    signals: dict[str, Callable[..., Any]] = field(default_factory=dict)
    queries: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: Update handlers by wire name (their validators: `update_validator`).
    updates: dict[str, Callable[..., Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityDefinition:
    name: str
    #: What the worker calls: the decorated function, or a bound method of it.
    fn: Callable[..., Any]
    #: False for a plain `def`: the worker runs it in its activity executor.
    is_async: bool = True


def decorate(target: _T | None, mark: Callable[[_T], object]) -> _T | Callable[[_T], _T]:
    """The body of every decorator that takes an optional `name`: `@d` marks `target`
    at once, `@d(name=...)` returns the decorator that will."""

    def wrap(obj: _T) -> _T:
        mark(obj)
        return obj

    return wrap(target) if target is not None else wrap


def _or_default(name: str | None, default: str) -> str:
    # Only None means "the Python name": `name or default` turned an explicit
    # name="" into the default silently, where an empty name is refused everywhere else.
    return default if name is None else name


def _is_lambda(fn: Any) -> bool:
    return getattr(fn, "__name__", "") == "<lambda>"


def mark_run(fn: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@workflow.run method {fn.__qualname__} must be 'async def'")
    setattr(fn, _RUN, True)
    return fn


def _mark_handler(fn: Callable[..., Any], name: str | None, kind: _HandlerKind) -> None:
    if _is_lambda(fn):
        raise TypeError(f"a {kind.kind} handler must be a named method, not a lambda")
    setattr(fn, kind.marker, check_name(_or_default(name, fn.__name__), f"{kind.kind} name"))


def mark_signal(fn: Callable[..., Any], name: str | None) -> Callable[..., Any]:
    _mark_handler(fn, name, _SIGNAL)
    return fn


def mark_query(fn: Callable[..., Any], name: str | None) -> Callable[..., Any]:
    # A lambda is never a coroutine function: checking this first changes no message.
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"@workflow.query method {fn.__qualname__} must not be async")
    _mark_handler(fn, name, _QUERY)
    return fn


def mark_update(fn: Callable[..., Any], name: str | None) -> None:
    _mark_handler(fn, name, _UPDATE)


def update_validator(handler: Callable[..., Any]) -> Callable[..., Any] | None:
    validator: Callable[..., Any] | None = getattr(handler, UPDATE_VALIDATOR, None)
    return validator


def define_workflow(cls: type, name: str | None) -> WorkflowDefinition:
    if not inspect.isclass(cls):
        raise TypeError("@workflow.defn decorates a class")
    run_fn: Callable[..., Any] | None = None
    signals: dict[str, Callable[..., Any]] = {}
    queries: dict[str, Callable[..., Any]] = {}
    updates: dict[str, Callable[..., Any]] = {}
    for attr_name, member in inspect.getmembers(cls, inspect.isfunction):
        if getattr(member, _RUN, False):
            if run_fn is not None:
                raise TypeError(f"{cls.__name__} has two @workflow.run methods")
            run_fn = member
        for kind, handlers in ((_SIGNAL, signals), (_QUERY, queries), (_UPDATE, updates)):
            wire_name = getattr(member, kind.marker, None)
            if wire_name is None:
                continue
            if wire_name in handlers:
                raise TypeError(f"{cls.__name__} has two {kind.kind} handlers named {wire_name!r}")
            handlers[wire_name] = member
        del attr_name
    if run_fn is None:
        raise TypeError(f"{cls.__name__} has no @workflow.run method")
    init = cls.__init__
    if init is not object.__init__:
        params = list(inspect.signature(init).parameters.values())[1:]
        if any(
            p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            for p in params
        ):
            raise TypeError(f"{cls.__name__}.__init__ must take no required arguments")
    definition = WorkflowDefinition(
        name=check_name(_or_default(name, cls.__name__), "workflow type"),
        cls=cls,
        run_fn=run_fn,
        signals=signals,
        queries=queries,
        updates=updates,
    )
    setattr(cls, _WORKFLOW, definition)
    setattr(run_fn, _WORKFLOW, definition)
    return definition


def define_activity(fn: Callable[..., Any], name: str | None) -> ActivityDefinition:
    if _is_lambda(fn):
        raise TypeError("an activity must be a named function, not a lambda")
    if inspect.isclass(fn) or not callable(fn):
        raise TypeError(f"@activity.defn decorates a function or a method, not {fn!r}")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(f"activity {fn.__qualname__} must not be a generator")
    definition = ActivityDefinition(
        check_name(_or_default(name, fn.__name__), "activity type"),
        fn,
        is_async=inspect.iscoroutinefunction(fn),
    )
    setattr(fn, _ACTIVITY, definition)
    return definition


def workflow_definition(obj: Any) -> WorkflowDefinition:
    definition = getattr(obj, _WORKFLOW, None)
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"{obj!r} is not a @workflow.defn class or its @workflow.run method")
    return definition


def activity_definition(obj: Any) -> ActivityDefinition:
    """The definition of an activity function, or of a bound method (`service.charge`)
    whose function was decorated: then the worker calls the bound method, so `self` is
    the instance given (the decorator only saw the plain function)."""
    definition = getattr(obj, _ACTIVITY, None)
    if not isinstance(definition, ActivityDefinition):
        raise TypeError(f"{obj!r} is not an @activity.defn function")
    if inspect.ismethod(obj):
        return replace(definition, fn=obj)
    return definition


def _wire_name(obj: Any, what: str, definition: Callable[[Any], Any]) -> str:
    """The wire name of a workflow or activity given as its Python object or as text."""
    if isinstance(obj, str):
        return check_name(obj, what)
    return str(definition(obj).name)


def workflow_type_name(obj: Any) -> str:
    """Wire name of a workflow given as class, run method or string."""
    return _wire_name(obj, "workflow type", workflow_definition)


def activity_type_name(obj: Any) -> str:
    return _wire_name(obj, "activity type", activity_definition)


def _handler_name(obj: Any, kind: _HandlerKind) -> str:
    if isinstance(obj, str):
        return check_name(obj, f"{kind.kind} name")
    name = getattr(obj, kind.marker, None)
    if name is None:
        raise TypeError(f"{obj!r} is not a @workflow.{kind.kind} method")
    return str(name)


def signal_name(obj: Any) -> str:
    """Wire name of a signal given as its handler method or as text."""
    return _handler_name(obj, _SIGNAL)


def update_name(obj: Any) -> str:
    """Wire name of an update given as its handler method or as text."""
    return _handler_name(obj, _UPDATE)


def query_name(obj: Any) -> str:
    """Wire name of a query given as its handler method or as text."""
    return _handler_name(obj, _QUERY)
