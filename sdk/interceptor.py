"""Interceptors, as temporalio shapes them (docs/interceptors.md).

A client `ClientInterceptor` (temporalio's `temporalio.client.Interceptor`) wraps the
client's calls: `intercept_client(next)` returns an `OutboundInterceptor` whose
methods each take an input dataclass and call `self.next`. A `WorkerInterceptor`
(temporalio's `temporalio.worker.Interceptor`) wraps activity attempts
(`intercept_activity`) and, per workflow run, the workflow's inbound calls (run,
signals, queries, updates) and its outbound ones (activities, local activities, child
workflows, signals to other workflows, `info()`), through the class
`workflow_interceptor_class` returns. A client interceptor that is also a worker
interceptor is used by every worker of that client (as temporalio does).

`headers` travel with a start, a signal and an activity task, and with a child
workflow's start and a signal sent from workflow code: they are recorded in history
(WorkflowExecutionStarted, WorkflowExecutionSignaled, ActivityTaskScheduled's options,
StartChildWorkflowExecutionInitiated's options, SignalExternalWorkflowExecutionInitiated),
so a replay or another worker sees the same headers. Where temporalio's are payloads,
ours are JSON values (strings for tracing carriers); queries, updates, cancels,
terminates and local activities are intercepted but their headers are not sent.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from engine.activities import ActivityCancellationType
    from engine.children import ParentClosePolicy
    from engine.machine import WorkflowInfo
    from engine.start_options import WorkflowIDReusePolicy
    from engine.updates import WorkflowUpdateStage
    from sdk._child_workflows import ChildWorkflowHandle
    from sdk._retry import RetryPolicy
    from sdk.activity import ActivityInfo
    from sdk.client.handle import WorkflowHandle
    from sdk.client.update_handle import WorkflowUpdateHandle

Headers = Mapping[str, Any]


# --- client -------------------------------------------------------------------------


@dataclass
class StartWorkflowInput:
    """`Client.start_workflow` (and `execute_workflow`)."""

    workflow: str
    args: Sequence[Any]
    id: str
    task_queue: str
    execution_timeout: timedelta | float | None = None
    run_timeout: timedelta | float | None = None
    task_timeout: timedelta | float | None = None
    id_reuse_policy: Any = None
    id_conflict_policy: Any = None
    memo: Mapping[str, Any] | None = None
    start_signal: str | None = None
    start_signal_args: Sequence[Any] = ()
    headers: Headers = field(default_factory=dict)
    ret_type: Any = None
    #: Options of `start_workflow` not named above, passed on as they are.
    other_options: dict[str, Any] = field(default_factory=dict)
    #: The workflow as the caller named it (class, method or name), for its hints.
    workflow_ref: Any = field(default=None, repr=False)
    start_signal_ref: Any = field(default=None, repr=False)


@dataclass
class SignalWorkflowInput:
    id: str
    run_id: str | None
    signal: str
    args: Sequence[Any]
    headers: Headers = field(default_factory=dict)
    signal_ref: Any = field(default=None, repr=False)


@dataclass
class QueryWorkflowInput:
    id: str
    run_id: str | None
    query: str
    args: Sequence[Any]
    headers: Headers = field(default_factory=dict)
    ret_type: Any = None
    timeout: float = 5.0
    query_ref: Any = field(default=None, repr=False)


@dataclass
class CancelWorkflowInput:
    id: str
    run_id: str | None
    reason: str = ""


@dataclass
class TerminateWorkflowInput:
    id: str
    run_id: str | None
    reason: str = ""


@dataclass
class StartWorkflowUpdateInput:
    """`handle.start_update` / `execute_update` (its headers are not sent yet)."""

    id: str
    run_id: str | None
    update_id: str | None
    update: str
    args: Sequence[Any]
    wait_for_stage: WorkflowUpdateStage
    headers: Headers = field(default_factory=dict)
    ret_type: Any = None
    update_ref: Any = field(default=None, repr=False)


class OutboundInterceptor:
    """The client's calls (temporalio's `temporalio.client.OutboundInterceptor`)."""

    def __init__(self, next: OutboundInterceptor) -> None:
        self.next = next

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle:
        return await self.next.start_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        await self.next.signal_workflow(input)

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        return await self.next.query_workflow(input)

    async def cancel_workflow(self, input: CancelWorkflowInput) -> None:
        await self.next.cancel_workflow(input)

    async def terminate_workflow(self, input: TerminateWorkflowInput) -> None:
        await self.next.terminate_workflow(input)

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        return await self.next.start_workflow_update(input)


class ClientInterceptor:
    """Give `Client.connect(url, interceptors=[...])` (temporalio's
    `temporalio.client.Interceptor`; also `sdk.client.Interceptor`)."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return next


# --- activities -----------------------------------------------------------------------


@dataclass
class ExecuteActivityInput:
    fn: Callable[..., Any]
    args: Sequence[Any]
    executor: concurrent.futures.Executor | None
    headers: Headers = field(default_factory=dict)


class ActivityOutboundInterceptor:
    """What activity code calls: `activity.info()` and `activity.heartbeat()`."""

    def __init__(self, next: ActivityOutboundInterceptor) -> None:
        self.next = next

    def info(self) -> ActivityInfo:
        return self.next.info()

    def heartbeat(self, *details: Any) -> None:
        self.next.heartbeat(*details)


class ActivityInboundInterceptor:
    """An activity attempt (`execute_activity` runs the function)."""

    def __init__(self, next: ActivityInboundInterceptor) -> None:
        self.next = next

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        """Called first with the outbound chain: wrap it here (`super().init(Mine(outbound))`)."""
        self.next.init(outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        return await self.next.execute_activity(input)


# --- workflows ------------------------------------------------------------------------


@dataclass
class WorkflowInterceptorClassInput:
    unsafe_extern_functions: MutableMapping[str, Callable[..., Any]] = field(
        default_factory=dict)


@dataclass
class ExecuteWorkflowInput:
    type: type
    run_fn: Callable[..., Awaitable[Any]]
    args: Sequence[Any]
    headers: Headers = field(default_factory=dict)


@dataclass
class HandleSignalInput:
    signal: str
    args: Sequence[Any]
    headers: Headers = field(default_factory=dict)


@dataclass
class HandleQueryInput:
    id: str
    query: str
    args: Sequence[Any]
    headers: Headers = field(default_factory=dict)


@dataclass
class StartActivityInput:
    """`workflow.start_activity` / `execute_activity` (remote activities)."""

    activity: str
    args: Sequence[Any]
    task_queue: str | None = None
    start_to_close_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None
    schedule_to_start_timeout: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    retry_policy: RetryPolicy | None = None
    cancellation_type: ActivityCancellationType | None = None
    headers: Headers = field(default_factory=dict)
    ret_type: Any = None
    activity_ref: Any = field(default=None, repr=False)


@dataclass
class HandleUpdateInput:
    """An update's validator or handler (its headers: none are sent yet)."""

    id: str
    update: str
    args: Sequence[Any]
    headers: Headers = field(default_factory=dict)


@dataclass
class StartLocalActivityInput:
    """`workflow.start_local_activity` / `execute_local_activity` (its headers are not
    carried: the attempt runs in this worker, without the activity interceptors)."""

    activity: str
    args: Sequence[Any]
    start_to_close_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None
    retry_policy: RetryPolicy | None = None
    headers: Headers = field(default_factory=dict)
    ret_type: Any = None
    activity_ref: Any = field(default=None, repr=False)


@dataclass
class StartChildWorkflowInput:
    """`workflow.start_child_workflow` / `execute_child_workflow`; `headers` are
    recorded with the child's start and given to its `execute_workflow`."""

    workflow: str
    args: Sequence[Any]
    id: str | None
    task_queue: str | None = None
    execution_timeout: timedelta | float | None = None
    run_timeout: timedelta | float | None = None
    task_timeout: timedelta | float | None = None
    id_reuse_policy: WorkflowIDReusePolicy | None = None
    parent_close_policy: ParentClosePolicy | None = None
    memo: Mapping[str, Any] | None = None
    headers: Headers = field(default_factory=dict)
    ret_type: Any = None
    workflow_ref: Any = field(default=None, repr=False)


@dataclass
class SignalChildWorkflowInput:
    """A child handle's `signal`; `headers` go with the signal (`handle_signal`)."""

    signal: str
    args: Sequence[Any]
    child_workflow_id: str
    headers: Headers = field(default_factory=dict)
    signal_ref: Any = field(default=None, repr=False)


@dataclass
class SignalExternalWorkflowInput:
    """An external handle's `signal`; `headers` go with the signal."""

    signal: str
    args: Sequence[Any]
    workflow_id: str
    workflow_run_id: str | None
    headers: Headers = field(default_factory=dict)
    signal_ref: Any = field(default=None, repr=False)


class WorkflowOutboundInterceptor:
    """What workflow code calls out to (temporalio's `WorkflowOutboundInterceptor`).
    Runs inside workflow code: it must be deterministic like the code itself."""

    def __init__(self, next: WorkflowOutboundInterceptor) -> None:
        self.next = next

    def info(self) -> WorkflowInfo:
        return self.next.info()

    def start_activity(self, input: StartActivityInput) -> asyncio.Future[Any]:
        return self.next.start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> asyncio.Future[Any]:
        return self.next.start_local_activity(input)

    async def start_child_workflow(self, input: StartChildWorkflowInput) -> ChildWorkflowHandle:
        return await self.next.start_child_workflow(input)

    async def signal_child_workflow(self, input: SignalChildWorkflowInput) -> None:
        await self.next.signal_child_workflow(input)

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        await self.next.signal_external_workflow(input)


class WorkflowInboundInterceptor:
    """Calls into a workflow run: its run method, signal, query and update handlers."""

    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        self.next = next

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        """Called first with the outbound chain: wrap it here (`super().init(Mine(outbound))`)."""
        self.next.init(outbound)

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        return await self.next.execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        await self.next.handle_signal(input)

    def handle_query(self, input: HandleQueryInput) -> Any:
        return self.next.handle_query(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        """The update's validator (only when it has one): raise to reject the update."""
        self.next.handle_update_validator(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        return await self.next.handle_update_handler(input)


class WorkerInterceptor:
    """Give `Worker(..., interceptors=[...])` (temporalio's `temporalio.worker.Interceptor`;
    also `sdk.worker.Interceptor`)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return next

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return None
