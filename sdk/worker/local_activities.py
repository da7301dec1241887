"""Running local activities in the worker, inside the workflow task that asked for them
(engine/local_activities.py says how the machine asks and replays). Every attempt runs
here, as a remote attempt would (on the loop, in the activity executor's thread or
process: sdk/worker/activity_attempt.py), and is retried here under the request's retry
policy and timeouts, with the same rules as the engine's Lua applies to remote ones."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import anyio
import structlog
from redis.exceptions import RedisError

from engine.calls import Call
from engine.codec import PayloadCodec
from engine.errors import ActivityTimeoutError, ApplicationError, PayloadError, to_failure
from engine.local_activities import LocalActivityOutcome, LocalActivityRequest
from engine.machine import WorkflowInfo
from engine.store import Store
from sdk import activity as activity_api
from sdk._definitions import ActivityDefinition
from sdk._payload_hints import hints_of
from sdk.worker.activity_attempt import call_activity, runs_in
from sdk.worker.plumbing import TRANSIENT

log = structlog.get_logger("redurable.worker")


def retry_delay_s(
    retry: dict[str, Any], failure: dict[str, Any], attempt: int, elapsed_ms: float,
    schedule_to_close_ms: int | None,
) -> float | None:
    """Seconds to wait before the next attempt, or None: the local activity has failed
    for good. The rules of `retry_delay` in engine/lua/00_common.lua."""
    if failure.get("non_retryable") or failure.get("timeout_type") == "schedule_to_close":
        return None
    max_attempts = int(retry.get("maximum_attempts") or 0)
    if max_attempts > 0 and attempt >= max_attempts:
        return None
    if failure.get("type") in (retry.get("non_retryable_error_types") or []):
        return None
    initial = float(retry.get("initial_interval_ms") or 1000)
    coefficient = float(retry.get("backoff_coefficient") or 2.0)
    maximum = float(retry.get("maximum_interval_ms") or initial * 100)
    delay_ms = min(initial * coefficient ** (attempt - 1), maximum)
    if schedule_to_close_ms and elapsed_ms + delay_ms >= schedule_to_close_ms:
        return None
    return delay_ms / 1000.0


class LocalActivities:
    """Runs the local activities one activation asks for (all at once) to their end."""

    def __init__(
        self,
        definitions: dict[str, ActivityDefinition],
        executor: concurrent.futures.Executor,
        codec: PayloadCodec,
    ) -> None:
        self._definitions = definitions
        self._executor = executor
        self._codec = codec

    async def run_keeping(
        self,
        requests: list[LocalActivityRequest],
        info: WorkflowInfo,
        store: Store,
        extend: Call,
        task_timeout_ms: int,
    ) -> list[LocalActivityOutcome]:
        """`run_all`, keeping the workflow task ours meanwhile: its deadline is moved
        (`extend`) on every third of the task timeout (as temporalio heartbeats a
        workflow task), so another worker takes it only if this one is gone."""
        outcomes: list[LocalActivityOutcome] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_task, store, extend, task_timeout_ms, info.workflow_id)
            outcomes = await self.run_all(requests, info)
            tg.cancel_scope.cancel()
        return outcomes

    async def run_all(
        self, requests: list[LocalActivityRequest], info: WorkflowInfo
    ) -> list[LocalActivityOutcome]:
        outcomes: list[LocalActivityOutcome] = []

        async def run(request: LocalActivityRequest) -> None:
            outcomes.append(await self.run(request, info))

        async with anyio.create_task_group() as tg:
            for request in requests:
                tg.start_soon(run, request)
        return outcomes

    async def run(self, request: LocalActivityRequest, info: WorkflowInfo) -> LocalActivityOutcome:
        """Every attempt of one local activity, until it succeeds or fails for good."""
        options = request.options
        start_to_close = options.get("start_to_close_ms")
        schedule_to_close = options.get("schedule_to_close_ms")
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            elapsed_ms = (time.monotonic() - started) * 1000
            budget: tuple[float, str] | None = None
            if start_to_close:
                budget = (start_to_close, "start_to_close")
            if schedule_to_close and (budget is None
                                      or schedule_to_close - elapsed_ms < budget[0]):
                budget = (max(0.0, schedule_to_close - elapsed_ms), "schedule_to_close")
            try:
                result = await self._attempt(request, info, attempt, budget)
                return LocalActivityOutcome(request.seq, attempt, result=result)
            except Exception as exc:
                failure = to_failure(exc)
            elapsed_ms = (time.monotonic() - started) * 1000
            delay = retry_delay_s(options.get("retry") or {}, failure, attempt, elapsed_ms,
                                  schedule_to_close)
            log.info("local_activity_failed", workflow_id=info.workflow_id,
                     activity=request.activity_type, attempt=attempt,
                     error=failure.get("message"), retry_in_s=delay)
            if delay is None:
                return LocalActivityOutcome(request.seq, attempt, failure=failure)
            await anyio.sleep(delay)

    async def _attempt(
        self,
        request: LocalActivityRequest,
        info: WorkflowInfo,
        attempt: int,
        budget: tuple[float, str] | None,
    ) -> bytes:
        definition = self._definitions.get(request.activity_type)
        if definition is None:
            # Another attempt on this worker would not find it either.
            raise ApplicationError(
                f"local activity type {request.activity_type!r} is not registered on this "
                f"worker (registered: {', '.join(sorted(self._definitions)) or 'none'})",
                type="ActivityNotRegistered",
                non_retryable=True,
            )
        hints = hints_of(definition.fn)
        try:
            args = hints.decode_args(self._codec.decode(request.input))
        except PayloadError as exc:
            raise ApplicationError(str(exc), type="PayloadError", non_retryable=True) from None
        ctx = activity_api.ActivityContext(
            activity_api.ActivityInfo(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                activity_id=request.seq,
                activity_type=request.activity_type,
                attempt=attempt,
                task_queue=info.task_queue,
                is_local=True,
            ),
            encode=self._codec.encode,
            runs_in=runs_in(definition, self._executor),
        )
        token = activity_api._context.set(ctx)
        try:
            timeout = None if budget is None else budget[0] / 1000.0
            with anyio.move_on_after(timeout) as scope:
                result = await call_activity(definition, args, ctx, self._executor)
            if scope.cancelled_caught:
                # A thread cannot be stopped: it learns it from heartbeat()/is_cancelled().
                ctx.request_cancel()
                assert budget is not None
                raise ActivityTimeoutError(
                    f"local activity {request.activity_type} timed out ({budget[1]})",
                    timeout_type=budget[1],
                )
        finally:
            activity_api._context.reset(token)
        try:
            return self._codec.encode(hints.encode_result(result))
        except PayloadError as exc:
            raise ApplicationError(
                f"local activity result cannot be stored: {exc}", type="PayloadError",
                non_retryable=True) from None


async def _keep_task(store: Store, extend: Call, task_timeout_ms: int, workflow_id: str) -> None:
    while True:
        await anyio.sleep(task_timeout_ms / 3000)
        try:
            if not await store.call(extend):
                # Timed out or fenced: its completion will be refused as stale.
                log.warning("workflow_task_lost", workflow_id=workflow_id)
                return
        except (RedisError, *TRANSIENT) as exc:
            log.warning("workflow_task_extend_failed", workflow_id=workflow_id, error=str(exc))
