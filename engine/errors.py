"""One error tree for the whole project, and its wire form (a JSON failure document).

`RedurableError` is the root. `FailureError` and its children travel on the wire: an
activity's or a workflow's failure is stored as JSON and raised again on the other side.
Control-flow exceptions derive from `BaseException` so that user code's
`except Exception:` cannot swallow them by accident.
"""

from __future__ import annotations

import json
import linecache
import traceback
from types import TracebackType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError


class RedurableError(Exception):
    """Root of every error raised by redurable."""


# --- errors that travel on the wire ---------------------------------------------------


class FailureError(RedurableError):
    """An error with a wire form. Raised inside workflow code it fails the workflow
    (any other exception fails only the workflow task, which is retried)."""

    #: Stack trace text from the side that raised it, when it came over the wire.
    stack: str | None = None

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


class ApplicationError(FailureError):
    """An error raised by user code. `type` names it for `non_retryable_error_types`."""

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.details = list(details)
        self.type = type
        self.non_retryable = non_retryable


class CancelledError(FailureError):
    """The workflow or activity was cancelled."""

    def __init__(self, message: str = "canceled") -> None:
        super().__init__(message)


class TerminatedError(FailureError):
    """The workflow was terminated; its code got no chance to clean up."""

    def __init__(self, message: str = "terminated") -> None:
        super().__init__(message)


class ActivityTimeoutError(FailureError):
    """An activity ran out of time: `timeout_type` is start_to_close, schedule_to_close
    or heartbeat."""

    def __init__(self, message: str, *, timeout_type: str) -> None:
        super().__init__(message)
        self.timeout_type = timeout_type


class WorkflowTimeoutError(FailureError):
    """A workflow run ran out of time (the cause of its WorkflowFailureError, as
    temporalio's TimeoutError is): `timeout_type` is "run" (run_timeout) or
    "execution" (execution_timeout, over the whole continue-as-new chain)."""

    def __init__(self, message: str, *, timeout_type: str) -> None:
        super().__init__(message)
        self.timeout_type = timeout_type


class ActivityError(FailureError):
    """Raised in workflow code when an activity failed for good; `cause` says why."""

    def __init__(
        self,
        message: str,
        *,
        activity_type: str,
        activity_id: int,
        attempt: int,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self.activity_type = activity_type
        self.activity_id = activity_id
        self.attempt = attempt


class ChildWorkflowError(FailureError):
    """Raised in the parent's code when a child workflow did not complete (temporalio's
    name): `cause` says why (`ApplicationError`, `CancelledError`, `TerminatedError`,
    `WorkflowTimeoutError`, ...)."""

    def __init__(
        self,
        message: str,
        *,
        workflow_id: str,
        run_id: str,
        workflow_type: str,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type


# --- client-side and engine errors ----------------------------------------------------


class AsyncActivityCancelledError(RedurableError):
    """An async activity handle's heartbeat: the workflow asked to cancel the activity
    (report_cancellation() says it stopped)."""


class ActivityNotFoundError(RedurableError):
    """An async activity handle names an attempt that is not running any more: it was
    completed, failed, timed out or retried, or its run closed. Nothing was applied."""


class WorkflowFailureError(RedurableError):
    """`handle.result()` of a workflow that did not complete; `cause` is why."""

    def __init__(self, message: str, *, cause: BaseException) -> None:
        super().__init__(message)
        self.__cause__ = cause

    @property
    def cause(self) -> BaseException:
        assert self.__cause__ is not None
        return self.__cause__


class WorkflowUpdateFailedError(RedurableError):
    """An update was rejected (its validator raised, no handler has its name) or its
    handler failed, or its run closed before the handler ended; `cause` says which
    (temporalio's name and shape)."""

    def __init__(self, message: str, *, cause: BaseException) -> None:
        super().__init__(message)
        self.__cause__ = cause

    @property
    def cause(self) -> BaseException:
        assert self.__cause__ is not None
        return self.__cause__


class InvalidArgumentError(RedurableError, ValueError):
    """Bad input from the caller: an id, a name, an option."""


class PayloadError(InvalidArgumentError):
    """A payload that cannot be encoded or decoded, or is over the size limit."""


class CodecKeyError(PayloadError):
    """This process's codec cannot read a payload that another may: it was compressed or
    encrypted by a codec chain, or with a key, that is not configured here. Not the
    payload's fault, so a signal carrying it is not dropped: the workflow task fails and
    is retried (docs/security.md)."""


class WorkflowAlreadyStartedError(FailureError):
    """A start found the id taken (its reuse or conflict policy refused it). A
    FailureError, as temporalio's is: a parent that does not catch it when it starts a
    child with a taken id fails, rather than retry its workflow task for ever."""

    def __init__(self, workflow_id: str, run_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is already running (run {run_id})")
        self.workflow_id = workflow_id
        self.run_id = run_id


class WorkflowNotFoundError(RedurableError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} not found")
        self.workflow_id = workflow_id


class WorkflowNotRunningError(RedurableError):
    """A signal, cancel or terminate sent to a workflow that has closed."""

    def __init__(self, workflow_id: str, status: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is not running (status {status})")
        self.workflow_id = workflow_id
        #: A WorkflowExecutionStatus when the engine raises it (a StrEnum: text compares).
        self.status = status


class QueryError(RedurableError):
    """Base of query errors."""


class UnknownQueryError(QueryError):
    def __init__(self, name: str, known: list[str]) -> None:
        known_text = ", ".join(known) if known else "none"
        super().__init__(f"workflow has no query named {name!r} (known: {known_text})")
        self.name = name


class QueryFailedError(QueryError):
    """The query handler raised."""


class QueryTimeoutError(QueryError):
    """No worker answered the query in time (is a worker for the task queue running?)."""


class NondeterminismError(RedurableError):
    """Workflow code did not issue the commands its recorded history says it issued."""


class HistoryLimitError(RedurableError):
    """The history reached its length limit; the workflow should continue-as-new."""


class DurabilityError(RedurableError):
    """A transition was applied but the durability asked for (fsync, replicas) was not
    confirmed in time: it may be lost if the server crashes now."""


class ServerUnavailableError(RedurableError, RedisConnectionError):
    """A client call could not be confirmed because the connection to Redis was lost
    (a restart, a failover, a network fault). Raised for a call that is safe to retry
    once the server stayed out of reach for the client's whole retry time
    (`RetryConfig.max_elapsed_time_millis`), and at once for a call that is not safe to
    retry when its connection was lost after it was sent. `maybe_applied` says whether
    the call may have taken effect. Also a redis-py ConnectionError, which is what code
    written before caught."""

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class DeadLetterNotFoundError(RedurableError):
    """No dead letter with that id (requeued or dropped already?)."""


class ContinueAsNewError(BaseException):
    """Control flow: raised by `workflow.continue_as_new` to end this run and start the
    next one with fresh history. A BaseException so `except Exception:` cannot catch it."""

    def __init__(
        self,
        args: list[Any],
        *,
        memo: Any = None,
        task_queue: str = "",
        workflow_type: str = "",
    ) -> None:
        super().__init__("continue as new")
        self.input = args
        #: The next run's memo as plain data (None: this run's), task queue and
        #: workflow type ("": this run's).
        self.memo = memo
        self.task_queue = task_queue
        self.workflow_type = workflow_type


class WorkflowContinuedAsNewError(RedurableError):
    """`result(follow_runs=False)` of a run that continued as new (temporalio's name):
    the chain went on in run `new_execution_run_id`."""

    def __init__(self, new_execution_run_id: str) -> None:
        super().__init__(f"the run continued as new, in run {new_execution_run_id}")
        self.new_execution_run_id = new_execution_run_id


# --- wire form ------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


#: Causes kept in a failure document. The limit was documented but not applied: a long
#: or cyclic `__cause__` chain (a raise b from a after a raise a from b) recursed until
#: RecursionError, raised inside the worker's own failure handling.
MAX_CAUSE_DEPTH = 16


#: Identical frames in a row shown before the rest are summed up, as CPython does.
REPEATS_SHOWN = 3


def format_stack(tb: TracebackType | None) -> str:
    """`traceback.format_tb`'s text without the lines of carets under each frame's
    source. Python 3.11 finds where those go by parsing every frame's line, which made
    formatting an activity's traceback ~30% of a worker's CPU for a failed step (about
    140 us for 6 frames, against ~6 us here)."""
    out: list[str] = []
    last: tuple[str, int, str] | None = None
    repeats = 0

    def summed_up() -> None:
        if repeats > REPEATS_SHOWN:
            more = repeats - REPEATS_SHOWN
            out.append(f"  [Previous line repeated {more} more time{'s' if more > 1 else ''}]\n")

    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        where = (code.co_filename, lineno, code.co_name)
        if where != last:
            summed_up()
            last, repeats = where, 0
        repeats += 1
        if repeats > REPEATS_SHOWN:
            continue
        out.append(f'  File "{where[0]}", line {lineno}, in {where[2]}\n')
        line = linecache.getline(where[0], lineno, frame.f_globals).strip()
        if line:
            out.append(f"    {line}\n")
    summed_up()
    return "".join(out)


def to_failure(
    exc: BaseException, *, with_stack: bool = True, _depth: int = 0
) -> dict[str, Any]:
    """The JSON-able wire form of an exception, causes included (depth limited)."""
    doc: dict[str, Any] = {
        "message": str(exc) or type(exc).__name__,
        "type": type(exc).__name__,
        "non_retryable": False,
    }
    if isinstance(exc, ApplicationError):
        # A str on the wire whatever code passed (an enum, say): else json.dumps
        # raised where the failure was written, and it never was.
        doc["type"] = str(exc.type) if exc.type else "ApplicationError"
        doc["kind"] = "application"
        doc["non_retryable"] = exc.non_retryable
        if exc.details:
            doc["details"] = [_jsonable(d) for d in exc.details]
    elif isinstance(exc, ActivityError):
        doc["kind"] = "activity"
        doc["activity_type"] = exc.activity_type
        doc["activity_id"] = exc.activity_id
        doc["attempt"] = exc.attempt
    elif isinstance(exc, ChildWorkflowError):
        doc["kind"] = "child_workflow"
        doc["workflow_id"] = exc.workflow_id
        doc["run_id"] = exc.run_id
        doc["workflow_type"] = exc.workflow_type
    elif isinstance(exc, ActivityTimeoutError):
        doc["kind"] = "timeout"
        doc["timeout_type"] = exc.timeout_type
    elif isinstance(exc, WorkflowTimeoutError):
        doc["kind"] = "workflow_timeout"
        doc["timeout_type"] = exc.timeout_type
    elif isinstance(exc, CancelledError):
        doc["kind"] = "cancelled"
    elif isinstance(exc, TerminatedError):
        doc["kind"] = "terminated"
    else:
        doc["kind"] = "application"
    # An error that came over the wire keeps the stack of where it was first raised
    # (an activity's, rebuilt by from_failure in the workflow and raised as the cause
    # of its ActivityError, has no traceback of its own: the stack was lost there).
    wire_stack = exc.stack if isinstance(exc, FailureError) else None
    if with_stack and wire_stack:
        doc["stack"] = wire_stack
    elif with_stack and exc.__traceback__ is not None:
        doc["stack"] = format_stack(exc.__traceback__)[-4000:]
    cause = exc.__cause__
    if cause is not None and _depth < MAX_CAUSE_DEPTH:
        doc["cause"] = to_failure(cause, with_stack=with_stack, _depth=_depth + 1)
    return doc


def from_failure(doc: dict[str, Any]) -> FailureError:
    """Rebuild the exception of a wire failure, causes included."""
    kind = doc.get("kind", "application")
    message = str(doc.get("message", ""))
    exc: FailureError
    if kind == "activity":
        exc = ActivityError(
            message,
            activity_type=str(doc.get("activity_type", "")),
            activity_id=int(doc.get("activity_id", 0)),
            attempt=int(doc.get("attempt", 0)),
        )
    elif kind == "child_workflow":
        exc = ChildWorkflowError(
            message,
            workflow_id=str(doc.get("workflow_id", "")),
            run_id=str(doc.get("run_id", "")),
            workflow_type=str(doc.get("workflow_type", "")),
        )
    elif kind == "timeout":
        exc = ActivityTimeoutError(message, timeout_type=str(doc.get("timeout_type", "")))
    elif kind == "workflow_timeout":
        exc = WorkflowTimeoutError(message, timeout_type=str(doc.get("timeout_type", "")))
    elif kind == "cancelled":
        exc = CancelledError(message)
    elif kind == "terminated":
        exc = TerminatedError(message)
    else:
        exc = ApplicationError(
            message,
            *doc.get("details", []),
            type=doc.get("type"),
            non_retryable=bool(doc.get("non_retryable", False)),
        )
    if "cause" in doc:
        exc.__cause__ = from_failure(doc["cause"])
    exc.stack = doc.get("stack")
    return exc


def failure_json(exc: BaseException) -> str:
    return json.dumps(to_failure(exc), separators=(",", ":"))


def parse_failure(text: str | bytes) -> dict[str, Any]:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("failure document must be a JSON object")
    return doc
