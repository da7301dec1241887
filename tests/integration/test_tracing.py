"""OpenTelemetry tracing as an interceptor (sdk.contrib.opentelemetry), with the SDK's
in-memory exporter, on fakeredis and a real server: one trace from the client's start
through the workflow and its activities; a second worker that replays the run (the
first one stopped) continues the same trace from the context in the history and
makes no duplicate spans of what already ran."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sdk import Client, WorkflowHandle, activity, workflow
from sdk.contrib.opentelemetry import HEADER_KEY, TracingInterceptor
from sdk.testing import running_worker
from tests.integration.helpers import intercepted

pytestmark = pytest.mark.anyio


@activity.defn
async def step(n: int) -> int:
    return n * 10


@workflow.defn
class Traced:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> int:
        first = await workflow.execute_activity(step, 1, start_to_close_timeout=timedelta(
            seconds=10))
        await workflow.wait_condition(lambda: self.go)
        second = await workflow.execute_activity(step, 2, start_to_close_timeout=timedelta(
            seconds=10))
        return int(first + second)


def tracing() -> tuple[TracingInterceptor, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return TracingInterceptor(provider.get_tracer("redurable-test")), exporter


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


async def waits_for_signal(handle: WorkflowHandle) -> bool:
    """The first activity's result was taken by a workflow task: the code waits."""
    types = [e.type async for e in handle.fetch_history()]
    done = types.index("ActivityTaskCompleted") if "ActivityTaskCompleted" in types else None
    return done is not None and "WorkflowTaskCompleted" in types[done:]


def traced_client(client: Client, interceptor: TracingInterceptor) -> Client:
    return intercepted(client, interceptor)


async def test_one_trace_across_client_workers_and_activities(client: Client) -> None:
    caller, caller_spans = tracing()
    first, first_spans = tracing()
    second, second_spans = tracing()
    starter = traced_client(client, caller)
    # The caller's own span: its start and its signal are in one trace (a call made
    # outside any span begins a trace of its own, as with temporalio).
    with caller.tracer.start_as_current_span("order"):
        handle = await starter.start_workflow(Traced.run, id="t-1", task_queue="tr")
        # Worker one runs the start and the first activity, then stops (its cache goes).
        async with running_worker(traced_client(client, first), task_queue="tr",
                                  workflows=[Traced], activities=[step]):
            with anyio.fail_after(20):
                while not await waits_for_signal(handle):
                    await anyio.sleep(0.02)
        await handle.signal(Traced.proceed)
        # Worker two replays the run from history and goes on.
        async with running_worker(traced_client(client, second), task_queue="tr",
                                  workflows=[Traced], activities=[step]):
            assert await handle.result() == 30

    mine = by_name(caller_spans.get_finished_spans())
    start = mine["StartWorkflow:Traced"][0]
    trace_id = start.context.trace_id
    one = by_name(first_spans.get_finished_spans())
    two = by_name(second_spans.get_finished_spans())
    every = [s for spans in (mine, one, two) for group in spans.values() for s in group]
    assert {s.context.trace_id for s in every} == {trace_id}

    # Made once, by the worker that ran the code live; none by the replaying one.
    assert len(one["RunWorkflow:Traced"]) == 1 and "RunWorkflow:Traced" not in two
    assert parent_id(one["RunWorkflow:Traced"][0]) == start.context.span_id
    assert len(one["StartActivity:step"]) == 1 and len(two["StartActivity:step"]) == 1
    # Worker two knew the run's context only from the history's start header.
    assert parent_id(two["StartActivity:step"][0]) == start.context.span_id
    assert parent_id(two["HandleSignal:proceed"][0]) == \
        mine["SignalWorkflow:proceed"][0].context.span_id
    # Each attempt's span is a child of the span that scheduled it, and the
    # activity's own spans are children of the attempt's.
    for spans in (one, two):
        run = spans["RunActivity:step"][0]
        assert parent_id(run) == spans["StartActivity:step"][0].context.span_id
    history = [e async for e in handle.fetch_history()]
    started = next(e for e in history if e.type == "WorkflowExecutionStarted")
    assert "traceparent" in started.attributes["header"][HEADER_KEY]


async def test_activity_spans_are_current_in_the_activity(client: Client) -> None:
    interceptor, exporter = tracing()
    seen: list[int] = []

    @activity.defn(name="probe")
    async def probe() -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    @workflow.defn(name="Probing")
    class Probing:
        @workflow.run
        async def run(self) -> None:
            await workflow.execute_activity(probe, start_to_close_timeout=timedelta(seconds=5))

    traced = traced_client(client, interceptor)
    async with running_worker(traced, task_queue="pr", workflows=[Probing], activities=[probe]):
        await traced.execute_workflow(Probing.run, id="p-1", task_queue="pr")
    run = by_name(exporter.get_finished_spans())["RunActivity:probe"][0]
    assert seen == [run.context.span_id]


@workflow.defn(name="TracedKid")
class TracedKid:
    @workflow.run
    async def run(self, n: int) -> int:
        return n + 1


@workflow.defn(name="TracedParent")
class TracedParent:
    def __init__(self) -> None:
        self.n = 0

    @workflow.update
    def set_n(self, n: int) -> int:
        self.n = n
        return n

    @set_n.validator
    def check_n(self, n: int) -> None:
        if n < 0:
            raise ValueError("negative")

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.n > 0)
        return int(await workflow.execute_child_workflow(TracedKid.run, self.n, id="tk-1"))


async def test_child_workflows_and_updates_are_traced(client: Client) -> None:
    interceptor, exporter = tracing()
    traced = traced_client(client, interceptor)
    async with running_worker(traced, task_queue="tc", workflows=[TracedParent, TracedKid]):
        with interceptor.tracer.start_as_current_span("caller"):
            handle = await traced.start_workflow(TracedParent.run, id="tp-1", task_queue="tc")
            assert await handle.execute_update(TracedParent.set_n, 4) == 4
            with anyio.fail_after(20):
                assert await handle.result() == 5
    spans = by_name(exporter.get_finished_spans())
    assert len({s.context.trace_id for group in spans.values() for s in group}) == 1
    start = spans["StartWorkflow:TracedParent"][0]
    run = spans["RunWorkflow:TracedParent"][0]
    assert len(spans["StartWorkflowUpdate:set_n"]) == 1
    # The update's headers are not sent: its worker spans hang under the run's start.
    assert parent_id(spans["ValidateUpdate:set_n"][0]) == start.context.span_id
    assert parent_id(spans["HandleUpdate:set_n"][0]) == start.context.span_id
    # The child's run continues the parent's trace through its start headers.
    start_child = spans["StartChildWorkflow:TracedKid"]
    assert len(start_child) == 1 and parent_id(start_child[0]) == start.context.span_id
    kid_run = spans["RunWorkflow:TracedKid"]
    assert len(kid_run) == 1 and parent_id(kid_run[0]) == start_child[0].context.span_id
    assert parent_id(run) == start.context.span_id
