"""OpenTelemetry tracing as an interceptor (temporalio's
`temporalio.contrib.opentelemetry.TracingInterceptor`; docs/interceptors.md).

    client = await Client.connect(url, interceptors=[TracingInterceptor()])
    worker = Worker(client, ...)     # takes the client's interceptor

One trace from the client's start through the workflow's tasks and its activities:
the client's span context travels in the `_tracer-data` header, which the history
records with the start, signals and activity tasks. Workflow spans are made only while
the code runs live, never while it replays, so a replay (after eviction, on another
worker) adds no duplicate spans, and whichever worker continues the workflow continues
the same trace, from the context in the history. Workflow spans are ended at once
(workflow code may sleep for days and move between workers); activity spans cover the
attempt and are current while it runs, so spans the activity makes are its children.
The exporter is the application's (opentelemetry-sdk or any other).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - the extra is missing
    raise ImportError(
        "sdk.contrib.opentelemetry needs the opentelemetry-api package: "
        "pip install 'redurable[otel]'"
    ) from None

import asyncio

from engine.machine import current_machine
from sdk import activity
from sdk.interceptor import (
    ActivityInboundInterceptor,
    ClientInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalChildWorkflowInput,
    SignalExternalWorkflowInput,
    SignalWorkflowInput,
    StartActivityInput,
    StartChildWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    WorkerInterceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

#: The header that carries the span context (temporalio's name).
HEADER_KEY = "_tracer-data"


class TracingInterceptor(ClientInterceptor, WorkerInterceptor):
    """Spans for client calls, workflow runs, signals, activity starts and attempts.
    `tracer`: default `trace.get_tracer("redurable")` from the global provider."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer("redurable")

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _ClientOutbound(next, self)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next, self)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        tracing = self

        class _Bound(_WorkflowInbound):
            interceptor = tracing

        return _Bound

    # --- the header -------------------------------------------------------------------
    def inject(self, headers: Mapping[str, Any], ctx: otel_context.Context | None = None
               ) -> dict[str, Any]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=ctx)
        return {**headers, HEADER_KEY: carrier} if carrier else dict(headers)

    def extract(self, headers: Mapping[str, Any]) -> otel_context.Context | None:
        carrier = headers.get(HEADER_KEY)
        if not isinstance(carrier, dict):
            return None
        return propagate.extract(carrier)


# --- client -----------------------------------------------------------------------------


class _ClientOutbound(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, root: TracingInterceptor) -> None:
        super().__init__(next)
        self.root = root

    async def start_workflow(self, input: StartWorkflowInput) -> Any:
        with self.root.tracer.start_as_current_span(
            f"StartWorkflow:{input.workflow}", kind=trace.SpanKind.CLIENT,
            attributes={"temporalWorkflowID": input.id},
        ):
            input.headers = self.root.inject(input.headers)
            return await self.next.start_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        with self.root.tracer.start_as_current_span(
            f"SignalWorkflow:{input.signal}", kind=trace.SpanKind.CLIENT,
            attributes={"temporalWorkflowID": input.id},
        ):
            input.headers = self.root.inject(input.headers)
            await self.next.signal_workflow(input)

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        with self.root.tracer.start_as_current_span(
            f"QueryWorkflow:{input.query}", kind=trace.SpanKind.CLIENT,
            attributes={"temporalWorkflowID": input.id},
        ):
            return await self.next.query_workflow(input)

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> Any:
        # The update's headers are not sent yet: the worker's spans for it have the
        # run's start context as their parent.
        with self.root.tracer.start_as_current_span(
            f"StartWorkflowUpdate:{input.update}", kind=trace.SpanKind.CLIENT,
            attributes={"temporalWorkflowID": input.id},
        ):
            input.headers = self.root.inject(input.headers)
            return await self.next.start_workflow_update(input)


# --- activities -------------------------------------------------------------------------


class _ActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: TracingInterceptor) -> None:
        super().__init__(next)
        self.root = root

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with self.root.tracer.start_as_current_span(
            f"RunActivity:{info.activity_type}", context=self.root.extract(input.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"temporalWorkflowID": info.workflow_id, "temporalRunID": info.run_id,
                        "temporalActivityID": str(info.activity_id)},
        ):
            return await self.next.execute_activity(input)


# --- workflows --------------------------------------------------------------------------


class _WorkflowInbound(WorkflowInboundInterceptor):
    """Per run: its spans' parent is the context recorded with its start (a signal's:
    the signal's own)."""

    interceptor: TracingInterceptor

    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self.parent: otel_context.Context | None = None

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound, self))

    def completed_span(self, name: str, parent: otel_context.Context | None,
                       kind: trace.SpanKind = trace.SpanKind.INTERNAL) -> trace.Span | None:
        """A span started and ended at once, only while the code runs live (a replay
        re-runs code whose spans were made already)."""
        machine = current_machine()
        if machine.replaying:
            return None
        info = machine.info
        span = self.interceptor.tracer.start_span(
            name, context=parent, kind=kind,
            attributes={"temporalWorkflowID": info.workflow_id, "temporalRunID": info.run_id})
        span.end()
        return span

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # The parent of every span of the run, on whichever worker runs it: the context
        # recorded with the start (the RunWorkflow span is made once, so a worker that
        # replays the run would not know its id).
        self.parent = self.interceptor.extract(input.headers)
        self.completed_span(f"RunWorkflow:{current_machine().info.workflow_type}",
                            self.parent, trace.SpanKind.SERVER)
        return await self.next.execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        parent = self.interceptor.extract(input.headers) or self.parent
        self.completed_span(f"HandleSignal:{input.signal}", parent, trace.SpanKind.SERVER)
        await self.next.handle_signal(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        parent = self.interceptor.extract(input.headers) or self.parent
        self.completed_span(f"ValidateUpdate:{input.update}", parent, trace.SpanKind.SERVER)
        self.next.handle_update_validator(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        parent = self.interceptor.extract(input.headers) or self.parent
        self.completed_span(f"HandleUpdate:{input.update}", parent, trace.SpanKind.SERVER)
        return await self.next.handle_update_handler(input)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, inbound: _WorkflowInbound) -> None:
        super().__init__(next)
        self.inbound = inbound

    def start_activity(self, input: StartActivityInput) -> asyncio.Future[Any]:
        inbound = self.inbound
        span = inbound.completed_span(f"StartActivity:{input.activity}", inbound.parent,
                                      trace.SpanKind.CLIENT)
        if span is not None:
            # Replaying, the activity was scheduled already: its recorded header stays.
            ctx = trace.set_span_in_context(span, inbound.parent)
            input.headers = inbound.interceptor.inject(input.headers, ctx)
        return self.next.start_activity(input)

    def _traced(self, name: str, headers: Mapping[str, Any]) -> Mapping[str, Any]:
        """A CLIENT span under the run's context, and `headers` carrying it (as they
        are, replaying: the recorded command keeps the headers it was sent with)."""
        inbound = self.inbound
        span = inbound.completed_span(name, inbound.parent, trace.SpanKind.CLIENT)
        if span is None:
            return headers
        return inbound.interceptor.inject(headers, trace.set_span_in_context(span, inbound.parent))

    async def start_child_workflow(self, input: StartChildWorkflowInput) -> Any:
        # The child's RunWorkflow span is this span's child, through the child's start
        # headers (recorded on its WorkflowExecutionStarted).
        input.headers = self._traced(f"StartChildWorkflow:{input.workflow}", input.headers)
        return await self.next.start_child_workflow(input)

    async def signal_child_workflow(self, input: SignalChildWorkflowInput) -> None:
        input.headers = self._traced(f"SignalChildWorkflow:{input.signal}", input.headers)
        await self.next.signal_child_workflow(input)

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        input.headers = self._traced(f"SignalExternalWorkflow:{input.signal}", input.headers)
        await self.next.signal_external_workflow(input)
