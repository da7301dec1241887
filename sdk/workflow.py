"""Workflow-side API: decorators, and the calls allowed inside workflow code.

Everything here is deterministic on replay: time is the activation's recorded time,
randomness is seeded by the run id, and every wait is a durable command.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar, overload

from engine.activities import ActivityCancellationType
from engine.children import ParentClosePolicy
from engine.errors import ChildWorkflowError, ContinueAsNewError, InvalidArgumentError
from engine.machine import ParentInfo, WorkflowInfo, current_machine
from engine.search_attributes import SearchAttributesInput, to_wire
from engine.validate import check_patch_id, check_task_queue
from sdk import _interception as interception
from sdk._activity_options import activity_options as _activity_options
from sdk._activity_options import ms as _ms
from sdk._activity_options import seconds as _seconds
from sdk._child_workflows import (
    ChildWorkflowHandle,
    ExternalWorkflowHandle,
    execute_child_workflow,
    get_external_workflow_handle,
    start_child_workflow,
)
from sdk._definitions import (
    activity_type_name,
    decorate,
    define_workflow,
    mark_query,
    mark_run,
    mark_signal,
    workflow_definition,
    workflow_type_name,
)
from sdk._log import ContextLogger
from sdk._memo import memo_from_wire, memo_to_wire
from sdk._payload_hints import hints_of, untyped, with_result
from sdk._retry import RetryPolicy
from sdk._update_defn import UpdateMethodMultiParam, update
from sdk.converter import value_to_type
from sdk.interceptor import StartActivityInput, StartLocalActivityInput

__all__ = [
    "ActivityCancellationType",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "ExternalWorkflowHandle",
    "ParentClosePolicy",
    "ParentInfo",
    "UpdateMethodMultiParam",
    "WorkflowInfo",
    "all_handlers_finished",
    "continue_as_new",
    "defn",
    "deprecate_patch",
    "execute_activity",
    "execute_activity_method",
    "execute_child_workflow",
    "execute_local_activity",
    "execute_local_activity_method",
    "get_external_workflow_handle",
    "info",
    "is_replaying",
    "logger",
    "memo",
    "memo_value",
    "now",
    "patched",
    "query",
    "random",
    "run",
    "signal",
    "sleep",
    "start_activity",
    "start_activity_method",
    "start_child_workflow",
    "start_local_activity",
    "start_local_activity_method",
    "update",
    "upsert_search_attributes",
    "uuid4",
    "wait_condition",
]

_C = TypeVar("_C", bound=type)
_F = TypeVar("_F", bound=Callable[..., Any])


@overload
def defn(cls: _C, /) -> _C: ...
@overload
def defn(*, name: str | None = None) -> Callable[[_C], _C]: ...
def defn(cls: _C | None = None, /, *, name: str | None = None) -> _C | Callable[[_C], _C]:
    """Class decorator: a workflow definition (one @run, any @signal and @query)."""

    return decorate(cls, lambda c: define_workflow(c, name))


def run(fn: _F) -> _F:
    """Marks the workflow's entry point: an `async def` method."""
    mark_run(fn)
    return fn


@overload
def signal(fn: _F, /) -> _F: ...
@overload
def signal(*, name: str | None = None) -> Callable[[_F], _F]: ...
def signal(fn: _F | None = None, /, *, name: str | None = None) -> _F | Callable[[_F], _F]:
    """Marks a signal handler (sync or async method); `name` overrides the wire name."""

    return decorate(fn, lambda f: mark_signal(f, name))


@overload
def query(fn: _F, /) -> _F: ...
@overload
def query(*, name: str | None = None) -> Callable[[_F], _F]: ...
def query(fn: _F | None = None, /, *, name: str | None = None) -> _F | Callable[[_F], _F]:
    """Marks a query handler: a plain method that reads state and returns a value."""

    return decorate(fn, lambda f: mark_query(f, name))


# --- inside workflow code -------------------------------------------------------------


def start_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    task_queue: str | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    schedule_to_start_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    result_type: Any = None,
) -> asyncio.Future[Any]:
    """Schedule an activity and return its future. Cancelling the future makes its
    await raise `ActivityError(cause=CancelledError)`; `cancellation_type` says whether
    the activity is asked to stop, and whether the future waits until it has.

    Arguments are checked against the activity's parameter hints (`PayloadError`
    naming the parameter) and its result is converted to its return hint, or to
    `result_type` (needed for an activity named by a string to get, say, a dataclass)."""
    if start_to_close_timeout is None and schedule_to_close_timeout is None:
        raise InvalidArgumentError(
            "an activity needs start_to_close_timeout or schedule_to_close_timeout"
        )
    machine = current_machine()
    if outbound := interception.workflow_outbound(machine.hooks):  # sdk/interceptor.py
        return outbound.start_activity(StartActivityInput(
            activity=activity_type_name(activity), args=list(args), task_queue=task_queue,
            start_to_close_timeout=start_to_close_timeout,
            schedule_to_close_timeout=schedule_to_close_timeout,
            schedule_to_start_timeout=schedule_to_start_timeout,
            heartbeat_timeout=heartbeat_timeout, retry_policy=retry_policy,
            cancellation_type=cancellation_type, ret_type=result_type, activity_ref=activity))
    options = _activity_options(retry_policy, start_to_close_timeout,
                                schedule_to_close_timeout, schedule_to_start_timeout,
                                heartbeat_timeout, cancellation_type)
    cancellation_type = ActivityCancellationType(cancellation_type)
    if headers := interception.activity_headers():
        options["header"] = dict(headers)  # the activity task carries them to its worker
    type_name = activity_type_name(activity)
    hints = with_result(
        untyped(type_name) if isinstance(activity, str) else hints_of(activity), result_type
    )
    return machine.schedule_activity(
        type_name,
        hints.encode_args(args),
        # Validated like any queue name: it becomes part of a stream key.
        machine.info.task_queue if task_queue is None else check_task_queue(task_queue),
        options,
        cancellation_type,
        None if hints.result is Any else hints.decode_result,
    )


async def execute_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    task_queue: str | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    schedule_to_start_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    result_type: Any = None,
) -> Any:
    """Run an activity and return its result; raises `ActivityError` when it fails for
    good (retries exhausted, non-retryable error, or timeout) or is cancelled
    (`cause` a `CancelledError`: see `start_activity`)."""
    return await start_activity(
        activity,
        *args,
        task_queue=task_queue,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        retry_policy=retry_policy,
        cancellation_type=cancellation_type,
        result_type=result_type,
    )


def start_activity_method(activity: Callable[..., Any], *args: Any, **options: Any) -> (
    asyncio.Future[Any]
):
    """`start_activity` for an activity that is a method (`Service.charge`, unbound: the
    worker registered the bound method `service.charge`), as temporalio names it."""
    return start_activity(activity, *args, **options)


async def execute_activity_method(activity: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """`execute_activity` for an activity that is a method (see start_activity_method)."""
    return await execute_activity(activity, *args, **options)


def start_local_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    result_type: Any = None,
) -> asyncio.Future[Any]:
    """Run an activity registered on this worker inside the current workflow task, with
    no task-queue round trip, and return its future. Its outcome is recorded in history
    as a marker ("core_local_activity"), which replay reads instead of running it again.
    Retried in the worker under `retry_policy` and the timeouts; the whole run must fit
    in the worker's `workflow_task_timeout` (docs/activities.md "Local activities").
    Cancelling the future before it resolved drops the local activity."""
    if start_to_close_timeout is None and schedule_to_close_timeout is None:
        raise InvalidArgumentError(
            "a local activity needs start_to_close_timeout or schedule_to_close_timeout"
        )
    machine = current_machine()
    if outbound := interception.workflow_outbound(machine.hooks):  # sdk/interceptor.py
        return outbound.start_local_activity(StartLocalActivityInput(
            activity=activity_type_name(activity), args=list(args),
            start_to_close_timeout=start_to_close_timeout,
            schedule_to_close_timeout=schedule_to_close_timeout, retry_policy=retry_policy,
            ret_type=result_type, activity_ref=activity))
    options: dict[str, Any] = {"retry": (retry_policy or RetryPolicy()).to_wire()}
    for key, value, what in (
        ("start_to_close_ms", start_to_close_timeout, "start_to_close_timeout"),
        ("schedule_to_close_ms", schedule_to_close_timeout, "schedule_to_close_timeout"),
    ):
        ms = _ms(value, what)
        if ms is not None:
            options[key] = ms
    type_name = activity_type_name(activity)
    hints = with_result(
        untyped(type_name) if isinstance(activity, str) else hints_of(activity), result_type
    )
    return machine.schedule_local_activity(
        type_name,
        hints.encode_args(args),
        options,
        None if hints.result is Any else hints.decode_result,
    )


async def execute_local_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    result_type: Any = None,
) -> Any:
    """Run a local activity (see `start_local_activity`) and return its result; raises
    `ActivityError` when it failed for good (retries exhausted, a non-retryable error,
    or out of time), as a remote activity does."""
    return await start_local_activity(
        activity,
        *args,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        retry_policy=retry_policy,
        result_type=result_type,
    )


def start_local_activity_method(
    activity: Callable[..., Any], *args: Any, **options: Any
) -> asyncio.Future[Any]:
    """`start_local_activity` for an activity that is a method (see start_activity_method)."""
    return start_local_activity(activity, *args, **options)


async def execute_local_activity_method(
    activity: Callable[..., Any], *args: Any, **options: Any
) -> Any:
    """`execute_local_activity` for an activity that is a method."""
    return await execute_local_activity(activity, *args, **options)


async def sleep(duration: timedelta | float) -> None:
    """A durable timer: survives worker restarts, fires on the Redis server's clock."""
    seconds = _seconds(duration, "sleep duration") or 0.0
    await asyncio.sleep(seconds)


async def wait_condition(
    fn: Callable[[], bool], *, timeout: timedelta | float | None = None
) -> bool:
    """Wait until `fn()` is true (re-checked after every step of the workflow).
    Returns False if `timeout` passed first."""
    machine = current_machine()
    if fn():
        return True
    future = machine.wait_for(fn)
    seconds = _seconds(timeout, "timeout")
    if seconds is None:
        await future
        return True
    try:
        await asyncio.wait_for(future, seconds)
    except TimeoutError:
        return False
    return True


def all_handlers_finished() -> bool:
    """No signal or update handler is still running: a workflow that must not end
    while they do waits with `await workflow.wait_condition(workflow.all_handlers_finished)`
    before it returns or continues as new (temporalio's name)."""
    return current_machine().all_handlers_finished()


def now() -> datetime:
    """The workflow's current time (the activation's recorded time, in UTC)."""
    return datetime.fromtimestamp(current_machine().now_seconds(), tz=UTC)


def random() -> Any:
    """A `random.Random` seeded by the run id: the same numbers on every replay."""
    return current_machine().random


def uuid4() -> uuid.UUID:
    """A UUID4 from the deterministic random source."""
    return current_machine().uuid4()


def info() -> WorkflowInfo:
    machine = current_machine()
    if outbound := interception.workflow_outbound(machine.hooks):  # sdk/interceptor.py
        return outbound.info()
    return machine.info


def memo() -> dict[str, Any]:
    """The run's memo (`start_workflow(memo=...)`), values as they decode ({} none);
    kept across continue-as-new."""
    machine = current_machine()
    raw = machine.info.raw_memo
    return memo_from_wire(machine.codec.decode(raw)) if raw else {}


_UNSET: Any = object()


def memo_value(key: str, default: Any = _UNSET, *, type_hint: Any = None) -> Any:
    """One memo value, converted to `type_hint` when given; `default` when the memo
    has no `key` (KeyError without one), as temporalio's `memo_value`."""
    values = memo()
    if key not in values:
        if default is _UNSET:
            raise KeyError(f"the memo has no key {key!r}")
        return default
    value = values[key]
    if type_hint is None:
        return value
    return value_to_type(type_hint, value, what=f"memo value {key!r}")


def is_replaying() -> bool:
    return current_machine().replaying


def patched(id: str) -> bool:
    """Whether to run the new code of patch `id` (temporalio's `patched`, same
    signature): True in a run that reaches this call on code that has it (a marker is
    recorded in the history), False when replaying a history that ran this point on
    older code (the old branch). The first answer for an id holds for the run.

        if workflow.patched("send-sms"):
            await workflow.execute_activity(send_sms, ...)      # new code
        else:
            await workflow.execute_activity(send_push, ...)     # old code

    docs/versioning.md: how to deploy it, then deprecate and remove it."""
    return current_machine().patch(check_patch_id(id), deprecated=False)


def upsert_search_attributes(attributes: SearchAttributesInput) -> None:
    """Set or change the run's search attributes (temporalio's name): a dict
    (`{"CustomerId": "c-1"}`, types from the values; None or [] removes one), or
    typed updates (`[SearchAttributeKey.for_int("Amount").value_set(5)]`, or pairs).
    Recorded in history (UpsertWorkflowSearchAttributes) when the task completes;
    `workflow.info().search_attributes` shows it at once. docs/visibility.md."""
    current_machine().upsert_search_attributes(to_wire(attributes, upsert=True))


def deprecate_patch(id: str) -> None:
    """The second step of removing a patch, once no run that took the old branch needs
    replaying: keep only the new branch and call this where `patched` was. Histories
    with or without the patch's marker then replay, and so do those of the next step,
    the code without the call (temporalio's `deprecate_patch`)."""
    current_machine().patch(check_patch_id(id), deprecated=True)


def continue_as_new(
    *positional: Any,
    args: Sequence[Any] | None = None,
    memo: Mapping[str, Any] | None = None,
    task_queue: str | None = None,
    workflow: Callable[..., Any] | type | str | None = None,
) -> NoReturn:
    """End this run and start the next run of its chain with fresh history (this run
    stays readable by its run id for the namespace's run retention). The arguments go
    positionally or as `args=[...]`; `memo` replaces the memo, `task_queue` and
    `workflow` (a workflow class, run method or type name) change where and what the
    next run is; by default all three stay as they are."""
    current_machine()
    if args is not None and positional:
        raise InvalidArgumentError("give continue_as_new's arguments positionally or as args=")
    values = list(args if args is not None else positional)
    hints = untyped("continue_as_new")
    type_name = ""
    if workflow is not None:
        type_name = workflow_type_name(workflow)
        if not isinstance(workflow, str):
            hints = hints_of(workflow_definition(workflow).run_fn, method=True)
    # Plain data now; the next run converts it to its run method's hints.
    raise ContinueAsNewError(
        hints.encode_args(values),
        memo=None if memo is None else memo_to_wire(memo),
        task_queue="" if task_queue is None else check_task_queue(task_queue),
        workflow_type=type_name,
    )


def _log_fields() -> dict[str, Any] | None:
    """The ids `logger`'s records carry; None (the line is dropped) while the workflow
    replays history, so each line is logged once however often it is replayed."""
    try:
        machine = current_machine()
    except RuntimeError:
        return {}
    if machine.replaying:
        return None
    i = machine.info
    return {"workflow_id": i.workflow_id, "run_id": i.run_id, "workflow_type": i.workflow_type,
            "task_queue": i.task_queue, "attempt": i.attempt}


#: A stdlib `logging.LoggerAdapter` (logger "redurable.workflow"), silent on replay:
#: `logger.info("charged %s", amount, extra={...}, exc_info=True)`; structlog-style
#: fields (`logger.info("charged", amount=3)`) work too.
logger = ContextLogger("redurable.workflow", _log_fields)
