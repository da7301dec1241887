"""Frozen definitions attached by the decorators, and their eager validation."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.validate import check_name

_RUN = "__redurable_run__"
_SIGNAL = "__redurable_signal__"
_QUERY = "__redurable_query__"
_WORKFLOW = "__redurable_workflow__"
_ACTIVITY = "__redurable_activity__"


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    cls: type
    run_fn: Callable[..., Any]
    signals: dict[str, Callable[..., Any]] = field(default_factory=dict)
    queries: dict[str, Callable[..., Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityDefinition:
    name: str
    fn: Callable[..., Any]


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


def mark_signal(fn: Callable[..., Any], name: str | None) -> Callable[..., Any]:
    if _is_lambda(fn):
        raise TypeError("a signal handler must be a named method, not a lambda")
    setattr(fn, _SIGNAL, check_name(_or_default(name, fn.__name__), "signal name"))
    return fn


def mark_query(fn: Callable[..., Any], name: str | None) -> Callable[..., Any]:
    if _is_lambda(fn):
        raise TypeError("a query handler must be a named method, not a lambda")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"@workflow.query method {fn.__qualname__} must not be async")
    setattr(fn, _QUERY, check_name(_or_default(name, fn.__name__), "query name"))
    return fn


def define_workflow(cls: type, name: str | None) -> WorkflowDefinition:
    if not inspect.isclass(cls):
        raise TypeError("@workflow.defn decorates a class")
    run_fn: Callable[..., Any] | None = None
    signals: dict[str, Callable[..., Any]] = {}
    queries: dict[str, Callable[..., Any]] = {}
    for attr_name, member in inspect.getmembers(cls, inspect.isfunction):
        if getattr(member, _RUN, False):
            if run_fn is not None:
                raise TypeError(f"{cls.__name__} has two @workflow.run methods")
            run_fn = member
        signal_name = getattr(member, _SIGNAL, None)
        if signal_name is not None:
            if signal_name in signals:
                raise TypeError(f"{cls.__name__} has two signal handlers named {signal_name!r}")
            signals[signal_name] = member
        query_name = getattr(member, _QUERY, None)
        if query_name is not None:
            if query_name in queries:
                raise TypeError(f"{cls.__name__} has two query handlers named {query_name!r}")
            queries[query_name] = member
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
    )
    setattr(cls, _WORKFLOW, definition)
    setattr(run_fn, _WORKFLOW, definition)
    return definition


def define_activity(fn: Callable[..., Any], name: str | None) -> ActivityDefinition:
    if _is_lambda(fn):
        raise TypeError("an activity must be a named function, not a lambda")
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"activity {fn.__qualname__} must be 'async def'")
    definition = ActivityDefinition(check_name(_or_default(name, fn.__name__), "activity type"), fn)
    setattr(fn, _ACTIVITY, definition)
    return definition


def workflow_definition(obj: Any) -> WorkflowDefinition:
    definition = getattr(obj, _WORKFLOW, None)
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"{obj!r} is not a @workflow.defn class or its @workflow.run method")
    return definition


def activity_definition(obj: Any) -> ActivityDefinition:
    definition = getattr(obj, _ACTIVITY, None)
    if not isinstance(definition, ActivityDefinition):
        raise TypeError(f"{obj!r} is not an @activity.defn function")
    return definition


def workflow_type_name(obj: Any) -> str:
    """Wire name of a workflow given as class, run method or string."""
    if isinstance(obj, str):
        return check_name(obj, "workflow type")
    return workflow_definition(obj).name


def activity_type_name(obj: Any) -> str:
    if isinstance(obj, str):
        return check_name(obj, "activity type")
    return activity_definition(obj).name


def signal_name(obj: Any) -> str:
    if isinstance(obj, str):
        return check_name(obj, "signal name")
    name = getattr(obj, _SIGNAL, None)
    if name is None:
        raise TypeError(f"{obj!r} is not a @workflow.signal method")
    return str(name)


def query_name(obj: Any) -> str:
    if isinstance(obj, str):
        return check_name(obj, "query name")
    name = getattr(obj, _QUERY, None)
    if name is None:
        raise TypeError(f"{obj!r} is not a @workflow.query method")
    return str(name)
