"""Typed usage of the public API: checked by `mypy` (strict), never run or collected by
pytest (like structlog's tests/typing/api.py). A change that makes ordinary use of the
API fail type checking fails `scripts/check`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, assert_type

from sdk import (
    ActivityError,
    ApplicationError,
    AsyncActivityHandle,
    CancelledError,
    Client,
    HistoryEvent,
    InvalidQueryError,
    MsgpackCodec,
    PayloadCodec,
    PendingActivity,
    RetryPolicy,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleListDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    SearchAttributeKey,
    SearchAttributePair,
    TerminatedError,
    TypedSearchAttributes,
    Worker,
    WorkflowDescription,
    WorkflowExecution,
    WorkflowExecutionCount,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
    activity,
    configure_logging,
    workflow,
)
from sdk.testing import ActivityEnvironment, Replayer, WorkflowEnvironment, WorkflowHistory


@dataclass
class Receipt:
    product_id: int
    paid_at: datetime


# --- activities ---------------------------------------------------------------------------


@activity.defn
async def charge(product_id: int, amount: float) -> str:
    info = activity.info()
    assert_type(info, activity.ActivityInfo)
    assert_type(info.attempt, int)
    assert_type(info.workflow_id, str)
    assert_type(info.activity_id, int)
    activity.heartbeat("progress", 1)
    activity.heartbeat()
    if activity.is_cancelled():
        raise ApplicationError("cancelled", {"product": product_id}, type="Cancelled")
    return f"{product_id}:{amount}"


@activity.defn(name="notify")
async def send_notification(message: str) -> None:
    del message


@activity.defn
def resize(path: str, width: int) -> str:
    """A sync activity: runs in the worker's activity executor (threads by default)."""
    activity.logger.info("resizing %s to %d", path, width, extra={"width": width})
    try:
        activity.heartbeat(width)
    except CancelledError:
        raise
    if activity.wait_for_cancelled_sync(0.1):
        raise CancelledError("stopped")
    token: bytes = activity.info().task_token
    del token
    if width > 10:
        activity.raise_complete_async()
    return path


class Payments:
    def __init__(self, fee: int) -> None:
        self.fee = fee

    @activity.defn
    async def charge(self, amount: int) -> int:
        return amount + self.fee


# The decorators keep the function's own type.
_charge: Callable[[int, float], Coroutine[Any, Any, str]] = charge
_resize: Callable[[str, int], str] = resize


# --- workflows ----------------------------------------------------------------------------


@workflow.defn
class Order:
    def __init__(self) -> None:
        self.state = "new"
        self.items: list[str] = []

    @workflow.signal
    def picked_up(self) -> None:
        self.state = "picked up"

    @workflow.signal(name="addItem")
    async def add_item(self, item: str) -> None:
        self.items.append(item)

    @workflow.update
    async def add_tip(self, amount: int) -> int:
        return amount

    @add_tip.validator
    def _check_tip(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("a tip must be positive")

    @workflow.update(name="setNote")
    def set_note(self, note: str) -> str:
        return note

    @workflow.query
    def get_status(self) -> dict[str, Any]:
        return {"state": self.state, "items": list(self.items)}

    @workflow.query(name="itemCount")
    def item_count(self) -> int:
        return len(self.items)

    @workflow.run
    async def run(self, product_id: int, wait_seconds: float = 60.0) -> str:
        info = workflow.info()
        assert_type(info.workflow_id, str)
        assert_type(info.attempt, int)
        assert_type(workflow.now(), datetime)
        assert_type(workflow.uuid4(), uuid.UUID)
        assert_type(workflow.is_replaying(), bool)
        assert_type(workflow.patched("send-sms"), bool)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.deprecate_patch(id="old-receipt")  # temporalio names the argument `id`
        workflow.upsert_search_attributes({"Stage": "paid", "Amount": 5})
        workflow.upsert_search_attributes([SearchAttributeKey.for_keyword("Stage").value_set("x"),
                                           SearchAttributeKey.for_int("Amount").value_unset()])
        assert_type(info.search_attributes, dict[str, Any])
        assert_type(info.typed_search_attributes, TypedSearchAttributes)
        rng: random.Random = workflow.random()
        workflow.logger.info("started", product_id=product_id, roll=rng.random())
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=100),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=5),
            maximum_attempts=3,
            non_retryable_error_types=["Declined"],
        )
        try:
            receipt = await workflow.execute_activity(
                charge,
                product_id,
                9.5,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=policy,
            )
        except ActivityError as exc:
            assert_type(exc.attempt, int)
            raise ApplicationError("payment failed", non_retryable=True) from exc
        del receipt
        total = await workflow.execute_activity_method(
            Payments.charge, 3, start_to_close_timeout=timedelta(minutes=1),
            schedule_to_start_timeout=timedelta(seconds=30),
        )
        del total
        paid: Receipt = await workflow.execute_activity(
            "charge", product_id, 9.5, start_to_close_timeout=timedelta(minutes=1),
            result_type=Receipt)
        del paid
        future = workflow.start_activity(
            "notify",
            "paid",
            schedule_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=5),
            task_queue="notifications",
        )
        assert_type(future, "asyncio.Future[Any]")
        ok = await workflow.wait_condition(
            lambda: self.state == "picked up", timeout=timedelta(seconds=wait_seconds)
        )
        assert_type(ok, bool)
        await asyncio.gather(future, workflow.sleep(timedelta(seconds=1)), workflow.sleep(0.5))
        if not ok and wait_seconds > 60:
            workflow.continue_as_new(args=[product_id, 1.0], memo={"retried": True},
                                     task_queue="orders", workflow=Order.run)
        if not ok:
            workflow.continue_as_new(product_id, wait_seconds * 2)
        assert_type(workflow.info().cron_schedule, str | None)
        return self.state


@workflow.defn(name="renamed")
class Renamed:
    @workflow.run
    async def run(self) -> None:
        try:
            await workflow.sleep(10)
        except asyncio.CancelledError:
            await workflow.execute_activity(
                send_notification, "cleanup", start_to_close_timeout=timedelta(seconds=5)
            )
            raise


@workflow.defn
class Family:
    @workflow.run
    async def run(self) -> str:
        child: workflow.ChildWorkflowHandle = await workflow.start_child_workflow(
            Renamed.run, id="kid", task_queue="q",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            execution_timeout=timedelta(minutes=1))
        assert_type(child.id, str)
        assert_type(child.first_execution_run_id, str)
        await child.signal("go", 1)
        child.cancel()
        try:
            await child
        except workflow.ChildWorkflowError as err:
            assert_type(err.workflow_id, str)
        await workflow.execute_child_workflow("Renamed", id="kid-2")
        other: workflow.ExternalWorkflowHandle = workflow.get_external_workflow_handle("o-1")
        await other.signal("picked_up")
        await other.cancel()
        parent = workflow.info().parent
        return "" if parent is None else parent.workflow_id


# --- client ----------------------------------------------------------------------------------


async def client_usage() -> None:
    configure_logging(json=True, level="info")
    codec: PayloadCodec = MsgpackCodec(limit=1024)
    client = await Client.connect("redis://127.0.0.1:6379", prefix="typed", codec=codec)
    async with client:
        handle = await client.start_workflow(Order.run, 3, 8.0, id="order-3", task_queue="orders")
        assert_type(handle, WorkflowHandle)
        await client.start_workflow("Order", 4, id="order-4", task_queue="orders")
        await client.start_workflow(Order, 5, id="order-5", task_queue="orders")
        await handle.signal(Order.picked_up)
        await handle.signal("addItem", "fries")
        tip: int = await handle.execute_update(Order.add_tip, 5, id="tip-1")
        uh = await handle.start_update(Order.set_note, "hi",
                                       wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        assert_type(uh, WorkflowUpdateHandle[Any])
        assert_type(uh.id, str)
        note: str = await uh.result()
        by_id = handle.get_workflow_update_handle("tip-1")
        assert_type(by_id, WorkflowUpdateHandle[Any])
        del tip, note
        try:
            await handle.execute_update("add_tip", -1)
        except WorkflowUpdateFailedError as err:
            assert_type(err.cause, BaseException)
        status: dict[str, Any] = await handle.query(Order.get_status)
        count: int = await handle.query("itemCount", timeout=1.0)
        del status, count
        desc = await handle.describe()
        assert_type(desc, WorkflowDescription)
        assert_type(desc.status, WorkflowExecutionStatus)
        running: bool = desc.status == "RUNNING"  # a StrEnum: plain text compares too
        del running
        assert_type(desc.start_time, datetime | None)
        assert_type(desc.pending_activities, list[PendingActivity])
        assert_type(desc.last_workflow_task_failure, dict[str, Any] | None)
        async for event in handle.fetch_history():
            assert_type(event, HistoryEvent)
            assert_type(event.event_id, int)
            assert_type(event.attributes, dict[str, Any])
        async for execution in client.list_workflows(status="RUNNING", type="Order"):
            assert_type(execution, WorkflowExecution)
            assert_type(execution.status, WorkflowExecutionStatus)
        async for execution in client.list_workflows(status=WorkflowExecutionStatus.FAILED):
            assert_type(execution.cursor, tuple[int, str])
        async for execution in client.list_workflows("CustomerId = 'c-1'", limit=10):
            assert_type(execution.search_attributes, dict[str, Any])
            assert_type(execution.typed_search_attributes, TypedSearchAttributes)
        counted = await client.count_workflows("ExecutionStatus = 'Running'")
        assert_type(counted, WorkflowExecutionCount)
        assert_type(counted.count, int)
        amount = SearchAttributeKey.for_int("Amount")
        assert_type(amount, SearchAttributeKey[int])
        pairs = TypedSearchAttributes([SearchAttributePair(amount, 5)])
        await client.start_workflow("Order", id="o-sa", task_queue="q", search_attributes=pairs)
        await client.start_workflow("Order", id="o-sa2", task_queue="q",
                                    search_attributes={"CustomerId": "c-1"})
        try:
            await client.count_workflows("Amount >")
        except InvalidQueryError as bad:
            assert_type(bad.position, int | None)
        try:
            result: str = await handle.result(timeout=30)
            del result
        except WorkflowFailureError as exc:
            assert_type(exc.cause, BaseException)
            if isinstance(exc.cause, CancelledError | TerminatedError):
                pass
        await handle.cancel()
        await handle.terminate(reason="typed")
        again = client.get_workflow_handle("order-3", run_id=handle.run_id)
        assert_type(await again.result(), Any)
        assert_type(await again.result(follow_runs=False), Any)
        await client.start_workflow(Renamed.run, id="cron", task_queue="q",
                                    cron_schedule="*/5 * * * *")
        assert_type(await client.execute_workflow(Renamed.run, id="r", task_queue="q"), Any)
        remote = client.get_async_activity_handle(task_token=b"...")
        assert_type(remote, AsyncActivityHandle)
        await remote.heartbeat("progress")
        await remote.complete({"ok": True})
        await remote.fail(ApplicationError("no"), last_heartbeat_details=[1])
        await remote.report_cancellation()
        by_ids = client.get_async_activity_handle(workflow_id="order-3", activity_id=1)
        await by_ids.complete()
        # Payloads follow type hints; `result_type=` where there is none.
        receipt: Receipt = await client.execute_workflow(
            "Order", 6, id="order-6", task_queue="orders", result_type=Receipt)
        by_class = client.get_workflow_handle_for(Order.run, "order-3")
        typed = client.get_workflow_handle("order-3", result_type=Receipt)
        assert_type(typed.result_type, Any)
        del receipt, by_class
        count_again: int = await handle.query("itemCount", result_type=int)
        del count_again


async def worker_usage(client: Client) -> None:
    worker = Worker(
        client,
        task_queue="orders",
        workflows=[Order, Renamed],
        activities=[charge, send_notification, resize, Payments(2).charge],
        max_concurrent_activities=10,
        activity_executor=concurrent.futures.ThreadPoolExecutor(4),
        no_remote_activities=False,
        graceful_shutdown_timeout=5.0,
        handle_signals=False,
    )
    task = asyncio.create_task(worker.run())
    worker.shutdown()
    await task


async def testing_usage(client: Client) -> None:
    async with Worker(client, task_queue="orders", workflows=[Order]) as worker:
        assert_type(worker, Worker)
    async with await WorkflowEnvironment.start_time_skipping() as env:
        assert_type(env.client, Client)
        await env.sleep(timedelta(days=30))
        assert_type(await env.get_current_time(), datetime)
        with env.auto_time_skipping_disabled():
            pass
    handle = client.get_workflow_handle("order-3")
    replayer = Replayer(workflows=[Order])
    assert_type(await handle.fetch_history(), WorkflowHistory)
    result = await replayer.replay_workflow(handle.fetch_history())
    assert_type(result.replay_failure, Exception | None)
    history = WorkflowHistory.from_file("order-3.json")
    results = await replayer.replay_workflows([history], raise_on_replay_failure=False)
    assert_type(results.replay_failures, dict[str, Exception])
    env2 = ActivityEnvironment()
    env2.on_heartbeat = lambda *details: None
    assert_type(await env2.run(charge, 3, 1.5), str)
    env2.cancel()


async def schedule_usage(client: Client) -> None:
    handle = await client.create_schedule("nightly", Schedule(
        action=ScheduleActionStartWorkflow(Order.run, 3, id="report", task_queue="orders"),
        spec=ScheduleSpec(cron_expressions=["0 3 * * *"],
                          intervals=[ScheduleIntervalSpec(every=timedelta(minutes=5))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE)))
    assert_type(handle, ScheduleHandle)
    desc = await client.get_schedule_handle("nightly").describe()
    assert_type(desc, ScheduleDescription)
    assert_type(desc.info.next_action_times, list[datetime])
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    await handle.pause(note="maintenance")
    await handle.backfill(ScheduleBackfill(start_at=datetime.now(), end_at=datetime.now()))

    def updater(update: ScheduleUpdateInput) -> ScheduleUpdate | None:
        return ScheduleUpdate(update.description.schedule)

    await handle.update(updater)
    async for listed in client.list_schedules():
        assert_type(listed, ScheduleListDescription)
    await handle.delete()


async def observability_usage(url: str) -> None:
    from prometheus_client import CollectorRegistry

    from sdk import (
        ClientInterceptor,
        OutboundInterceptor,
        StartWorkflowInput,
        WorkerInterceptor,
        WorkflowInboundInterceptor,
        WorkflowInterceptorClassInput,
    )
    from sdk.contrib.opentelemetry import TracingInterceptor

    class Tag(OutboundInterceptor):
        async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle:
            input.headers = {**input.headers, "tenant": "acme"}
            return await self.next.start_workflow(input)

    class Tagging(ClientInterceptor, WorkerInterceptor):
        def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
            return Tag(next)

        def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput
        ) -> type[WorkflowInboundInterceptor] | None:
            return None

    registry = CollectorRegistry()
    client = await Client.connect(url, metrics_registry=registry,
                                  interceptors=[Tagging(), TracingInterceptor()])
    worker = Worker(client, task_queue="orders", workflows=[Order], metrics_port=9464,
                    metrics_registry=registry, interceptors=[Tagging()])
    assert_type(worker, Worker)
