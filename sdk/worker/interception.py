"""Wiring of a worker's interceptors (sdk/interceptor.py): activity attempts through
the activity chain, and workflow runs through the inbound/outbound classes, with the
headers recorded in history (the start's and signals' events, the activity task)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.machine import WorkflowInfo, current_machine
from engine.updates import UpdateCalls
from sdk import activity as activity_api
from sdk._definitions import ActivityDefinition, WorkflowDefinition, update_validator
from sdk._interception import parse_header, reset_activity_root, set_activity_root
from sdk._payload_hints import hints_of
from sdk.interceptor import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ClientInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    HandleUpdateInput,
    SignalChildWorkflowInput,
    SignalExternalWorkflowInput,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkerInterceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from sdk.worker.activity_attempt import call_activity
from sdk.worker.workflow_runner import DefinitionHooks

if TYPE_CHECKING:
    from sdk._child_workflows import ChildWorkflowHandle


def worker_interceptors(
    client_interceptors: Sequence[ClientInterceptor], own: Sequence[WorkerInterceptor]
) -> list[WorkerInterceptor]:
    """The client's interceptors that are also worker interceptors, then the worker's
    own (temporalio's order)."""
    for i in own:
        if not isinstance(i, WorkerInterceptor):
            raise TypeError(f"worker interceptors must be WorkerInterceptor, not {i!r}")
    inherited = [i for i in client_interceptors if isinstance(i, WorkerInterceptor)]
    return [*inherited, *(i for i in own if i not in inherited)]


# --- activities -------------------------------------------------------------------------


async def run_activity(
    interceptors: Sequence[WorkerInterceptor],
    definition: ActivityDefinition,
    args: list[Any],
    ctx: activity_api.ActivityContext,
    executor: concurrent.futures.Executor,
    header: bytes | None,
) -> Any:
    """One attempt of `definition`, through the interceptors' activity chain."""
    if not interceptors:
        return await call_activity(definition, args, ctx, executor)
    chain: ActivityInboundInterceptor = _ActivityRoot(definition, ctx, executor)
    for interceptor in reversed(interceptors):
        chain = interceptor.intercept_activity(chain)
    chain.init(_ActivityOutboundRoot(ctx))
    return await chain.execute_activity(ExecuteActivityInput(
        fn=definition.fn, args=args,
        executor=None if definition.is_async else executor,
        headers=parse_header(header)))


class _ActivityRoot(ActivityInboundInterceptor):
    def __init__(self, definition: ActivityDefinition, ctx: activity_api.ActivityContext,
                 executor: concurrent.futures.Executor) -> None:
        self._definition = definition
        self._ctx = ctx
        self._executor = executor

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self._ctx.outbound = outbound  # activity.info() and heartbeat() go through it

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        definition = self._definition
        if input.fn is not definition.fn:
            definition = dataclasses.replace(definition, fn=input.fn)
        return await call_activity(definition, list(input.args), self._ctx, self._executor)


class _ActivityOutboundRoot(ActivityOutboundInterceptor):
    def __init__(self, ctx: activity_api.ActivityContext) -> None:
        self._ctx = ctx

    def info(self) -> activity_api.ActivityInfo:
        return self._ctx.info

    def heartbeat(self, *details: Any) -> None:
        activity_api.send_heartbeat(self._ctx, details)


# --- workflows --------------------------------------------------------------------------


def intercepted_definitions(
    definitions: dict[str, WorkflowDefinition], interceptors: Sequence[WorkerInterceptor]
) -> dict[str, WorkflowDefinition]:
    """The worker's workflow definitions, each carrying the inbound interceptor classes
    (asked once per worker, as temporalio does). Unchanged without any."""
    classes = tuple(
        c for i in interceptors
        if (c := i.workflow_interceptor_class(WorkflowInterceptorClassInput())) is not None)
    if not classes:
        return definitions
    return {name: InterceptedDefinition(**{f.name: getattr(d, f.name)
                                           for f in dataclasses.fields(d)},
                                        interceptor_classes=classes)
            for name, d in definitions.items()}


@dataclass(frozen=True)
class InterceptedDefinition(WorkflowDefinition):
    interceptor_classes: tuple[type[WorkflowInboundInterceptor], ...] = ()

    def make_hooks(self) -> DefinitionHooks:
        """What workflow_runner.new_machine binds the machine to."""
        return InterceptedHooks(self, self.interceptor_classes)


def _input_headers() -> dict[str, Any]:
    """The headers recorded on the event the machine is applying (start, signal)."""
    event = current_machine().input_event
    header = getattr(event, "header", None)
    return dict(header) if header else {}


class InterceptedHooks(DefinitionHooks):
    """DefinitionHooks whose run method, signal and query handlers are called through
    the inbound chain; `outbound` is what workflow code's calls go through."""

    def __init__(self, definition: WorkflowDefinition,
                 classes: Sequence[type[WorkflowInboundInterceptor]]) -> None:
        super().__init__(definition)
        chain: WorkflowInboundInterceptor = _WorkflowRoot(self)
        for cls in reversed(classes):
            chain = cls(chain)
        self.inbound = chain
        self.outbound: WorkflowOutboundInterceptor | None = None

    def _init(self) -> None:
        if self.outbound is None:
            self.inbound.init(_WorkflowOutboundRoot())

    def start(self, args: list[Any]) -> Any:
        hints = hints_of(self.definition.run_fn, method=True)
        args = hints.decode_args(args)
        self.instance = self.definition.cls()
        self._init()
        run_fn = self.definition.run_fn.__get__(self.instance)
        return self.inbound.execute_workflow(ExecuteWorkflowInput(
            type=self.definition.cls, run_fn=run_fn, args=args, headers=_input_headers()))

    def signal(self, name: str, args: list[Any]) -> Any:
        _handler, decoded = self.signal_call(name, args)
        self._init()
        return self.inbound.handle_signal(HandleSignalInput(
            signal=name, args=decoded, headers=_input_headers()))

    def query(self, name: str, args: list[Any]) -> Any:
        self._init()
        return self.inbound.handle_query(HandleQueryInput(id="", query=name, args=args))

    def update(self, name: str, args: list[Any]) -> UpdateCalls:
        handler, decoded, hints = self.update_call(name, args)
        self._init()
        input = HandleUpdateInput(id=current_machine().applying_update_id, update=name,
                                  args=decoded)
        inbound = self.inbound

        def validate() -> None:
            inbound.handle_update_validator(input)

        async def run() -> Any:
            return hints.encode_result(await inbound.handle_update_handler(input))

        return (validate if update_validator(handler) is not None else None), run


class _WorkflowRoot(WorkflowInboundInterceptor):
    def __init__(self, hooks: InterceptedHooks) -> None:
        self._hooks = hooks

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._hooks.outbound = outbound

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        return await input.run_fn(*input.args)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        hooks = self._hooks
        handler = hooks.definition.signals[input.signal]
        result = handler(hooks.instance, *input.args)
        if inspect.iscoroutine(result):
            await result

    def handle_query(self, input: HandleQueryInput) -> Any:
        return DefinitionHooks.query(self._hooks, input.query, list(input.args))

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        hooks = self._hooks
        validator = update_validator(hooks.definition.updates[input.update])
        if validator is not None:
            validator(hooks.instance, *input.args)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        hooks = self._hooks
        result = hooks.definition.updates[input.update](hooks.instance, *input.args)
        if inspect.isawaitable(result):
            result = await result
        return result


class _WorkflowOutboundRoot(WorkflowOutboundInterceptor):
    def __init__(self) -> None:
        pass

    def info(self) -> WorkflowInfo:
        return current_machine().info  # not workflow.info(): that calls the chain

    def start_activity(self, input: StartActivityInput) -> asyncio.Future[Any]:
        from sdk import workflow

        options: dict[str, Any] = {}
        if input.cancellation_type is not None:
            options["cancellation_type"] = input.cancellation_type
        ref = input.activity_ref
        fn = ref if ref is not None and _name(ref) == input.activity else input.activity
        token = set_activity_root(input.headers)
        try:
            return workflow.start_activity(
                fn, *input.args, task_queue=input.task_queue,
                start_to_close_timeout=input.start_to_close_timeout,
                schedule_to_close_timeout=input.schedule_to_close_timeout,
                schedule_to_start_timeout=input.schedule_to_start_timeout,
                heartbeat_timeout=input.heartbeat_timeout, retry_policy=input.retry_policy,
                result_type=input.ret_type, **options)
        finally:
            reset_activity_root(token)

    def start_local_activity(self, input: StartLocalActivityInput) -> asyncio.Future[Any]:
        from sdk import workflow

        ref = input.activity_ref
        fn = ref if ref is not None and _name(ref) == input.activity else input.activity
        token = set_activity_root(input.headers)
        try:
            return workflow.start_local_activity(
                fn, *input.args, start_to_close_timeout=input.start_to_close_timeout,
                schedule_to_close_timeout=input.schedule_to_close_timeout,
                retry_policy=input.retry_policy, result_type=input.ret_type)
        finally:
            reset_activity_root(token)

    async def start_child_workflow(self, input: StartChildWorkflowInput) -> ChildWorkflowHandle:
        from sdk import _child_workflows as children

        return await children.start_child(input)

    async def signal_child_workflow(self, input: SignalChildWorkflowInput) -> None:
        from sdk import _child_workflows as children

        await children.signal_child(input, _signal_of(input.signal_ref, input.signal))

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        from sdk import _child_workflows as children

        await children.signal_external(input, _signal_of(input.signal_ref, input.signal))


def _signal_of(ref: Any, name: str) -> Any:
    from sdk._definitions import signal_name

    return ref if ref is not None and signal_name(ref) == name else name


def _name(activity: Any) -> str:
    from sdk._definitions import activity_type_name

    return activity_type_name(activity)
