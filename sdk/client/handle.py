"""A handle to one workflow (by id, optionally run id): signal, query, describe, wait
for the result, read the history, cancel, terminate."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine import run_chain
from engine.errors import (
    InvalidArgumentError,
    QueryFailedError,
    QueryTimeoutError,
    RedurableError,
    UnknownQueryError,
    WorkflowContinuedAsNewError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    from_failure,
)
from engine.query_wire import QueryRequest, QueryStatus, decode_answer, encode_request
from engine.search_attributes import from_wire, plain
from engine.status import WorkflowExecutionStatus
from engine.store import Store
from sdk import _interception as interception
from sdk._definitions import query_name, signal_name
from sdk._memo import memo_from_wire
from sdk._payload_hints import hints_of, untyped, with_result
from sdk.client import update_handle
from sdk.client.history import HistoryFetch
from sdk.client.registry import live_workers
from sdk.client.types import (
    HistoryEvent,
    PendingActivity,
    WorkflowDescription,
    dead_letter_id,
    parse_time,
    text,
    to_history_event,
)
from sdk.converter import value_to_type
from sdk.interceptor import (
    CancelWorkflowInput,
    QueryWorkflowInput,
    SignalWorkflowInput,
    TerminateWorkflowInput,
)

if TYPE_CHECKING:
    from sdk.client.client import Client

#: What result() waits past: the run goes on (a continued run in the same keys).
_NOT_FAILED = frozenset({WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW})


def _duration(ms: bytes | None) -> timedelta | None:
    return timedelta(milliseconds=int(ms)) if ms else None


class WorkflowHandle:
    """A workflow by id (and optionally run id). Cheap: holds no connection."""

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        run_id: str | None,
        *,
        result_type: Any = None,
        first_execution_run_id: str | None = None,
        pinned_run: bool = False,
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        #: The handle names its run (`get_workflow_handle(id, run_id=...)`): describe
        #: and history read that run, also once closed in a chain. A handle from
        #: start_workflow follows the chain's current run instead (as temporalio's).
        self.pinned_run = pinned_run and run_id is not None
        #: The first run of the run chain (temporalio's name): the run `start_workflow`
        #: started (or the running one it kept), else as given, else None.
        self.first_execution_run_id = first_execution_run_id
        #: What `result()` converts the result to (None: the decoded value as it is).
        self.result_type = result_type

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"

    @property
    def _store(self) -> Store:
        return self.client.store

    async def _state(self) -> dict[str, bytes]:
        state = await self._store.get_state(self.id)
        if not state:
            raise WorkflowNotFoundError(self.id)
        return state

    async def result(self, *, follow_runs: bool = True, timeout: float | None = None) -> Any:
        """Wait for the run to close and return its result, or raise
        WorkflowFailureError. With `follow_runs` (the default, as in temporalio) a run
        that continued as new, or a cron run, is followed to the end of its chain;
        without, the handle's run's own outcome (WorkflowContinuedAsNewError when it
        continued as new). Blocks on a close notification: no polling."""
        wait = self._result(follow_runs)
        return await asyncio.wait_for(wait, timeout) if timeout else await wait

    async def _result(self, follow_runs: bool) -> Any:
        watcher = self.client.close_watcher
        # The run whose outcome is wanted, moved along the chain when following it.
        run = self.run_id
        while True:
            # Subscribe first, then look: a close between the two still wakes us.
            closed = await watcher.register(self.id)
            try:
                status, result, failure, current, cron = await self.client.retrier.retry(
                    f"result of workflow {self.id!r}",
                    lambda: self.client.store.get_fields(
                        self.id, "status", "result", "failure", "run_id", "cron_schedule"),
                )
                if status is None:
                    raise WorkflowNotFoundError(self.id)
                if run and text(current) != run:
                    kept = await self._closed_run(run)
                    if kept:
                        next_run = text(kept.get("new_execution_run_id"))
                        if follow_runs:
                            run = next_run
                            continue
                        kept_status = WorkflowExecutionStatus.parse(kept["status"])
                        if kept_status is WorkflowExecutionStatus.CONTINUED_AS_NEW:
                            raise WorkflowContinuedAsNewError(next_run)
                        return self._outcome(kept_status, kept.get("result"), kept.get("failure"))
                    run = None  # not kept (retention) or another chain: the current run
                run_status = WorkflowExecutionStatus.parse(status)
                chain_goes_on = follow_runs and cron and run_chain.cron_goes_on(
                    run_status, failure)
                if run_status not in _NOT_FAILED and not chain_goes_on:
                    return self._outcome(run_status, result, failure)
                # Re-check now and then in case a notification was lost with a connection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closed), 30)
            finally:
                watcher.unregister(self.id, closed)

    def _outcome(self, status: WorkflowExecutionStatus, result: bytes | None,
                 failure: bytes | None) -> Any:
        """A closed run's result, or its failure raised."""
        if status is WorkflowExecutionStatus.COMPLETED:
            value = self.client.codec.decode(result or b"")
            if self.result_type is None:
                return value
            return value_to_type(self.result_type, value, what=f"result of workflow {self.id}")
        cause = from_failure(json.loads(failure)) if failure else RedurableError(status.value)
        raise WorkflowFailureError(f"workflow {self.id} {status.value.lower()}", cause=cause)

    async def _closed_run(self, run_id: str) -> dict[str, bytes]:
        """Closed run `run_id` of this workflow as kept ({}: not kept)."""
        client = self.client
        return await client.retrier.retry(
            f"run {run_id!r} of workflow {self.id!r}",
            lambda: run_chain.read_closed_run(client.redis, client.keys, self.id, run_id),
        )

    async def _run_state(self) -> tuple[dict[str, bytes], bool]:
        """The state of the handle's run: the current one unless the handle names
        (`get_workflow_handle(id, run_id=...)`) a closed run of the chain; and whether
        that is a kept closed run."""
        state = await self._store.get_state(self.id)
        if self.pinned_run and self.run_id and text(state.get("run_id")) != self.run_id:
            kept = await self._closed_run(self.run_id)
            if not kept:
                raise WorkflowNotFoundError(f"{self.id} (run {self.run_id})")
            return kept, True
        if not state:
            raise WorkflowNotFoundError(self.id)
        return state, False

    async def signal(self, signal: Callable[..., Any] | str, *args: Any) -> None:
        """Deliver a signal; raises WorkflowNotFoundError or WorkflowNotRunningError.
        Given as its handler, its parameter hints check the arguments (PayloadError).
        Delivered once even when retried through an outage: the workflow's shard
        remembers the signal's request id (as Temporal's signal request id)."""
        if chain := interception.intercepting(self.client.outbound_interceptor):
            return await chain.signal_workflow(SignalWorkflowInput(
                self.id, self.run_id, signal_name(signal), list(args), signal_ref=signal))
        name = signal_name(signal)
        hints = untyped(name) if isinstance(signal, str) else hints_of(signal, method=True)
        payload = self.client.codec.encode(hints.encode_args(args))
        request_id = uuid.uuid4().hex
        header = interception.outgoing_header()
        await self._to_chain(
            f"signal {name!r} to workflow {self.id!r}",
            lambda run: self._store.signal(self.id, run, name, payload, request_id,
                                           header=header),
        )

    # Updates (temporalio's names), written in sdk/client/update_handle.py.
    execute_update = update_handle.execute_update
    start_update = update_handle.start_update
    get_workflow_update_handle = update_handle.get_workflow_update_handle

    async def query(
        self,
        query: Callable[..., Any] | str,
        *args: Any,
        timeout: float = 5.0,
        result_type: Any = None,
    ) -> Any:
        """Ask a worker to answer a query from the workflow's state (running or closed).
        Given as its handler, its hints check the arguments and convert the answer (to
        `result_type` when given); an answer that does not fit raises PayloadError."""
        if chain := interception.intercepting(self.client.outbound_interceptor):
            return await chain.query_workflow(QueryWorkflowInput(
                self.id, self.run_id, query_name(query), list(args), ret_type=result_type,
                timeout=timeout, query_ref=query))
        name = query_name(query)
        asked_at = time.monotonic()
        hints = with_result(
            untyped(name) if isinstance(query, str) else hints_of(query, method=True),
            result_type,
        )
        encoded_args = self.client.codec.encode(hints.encode_args(args))
        state = await self._state()
        if self.pinned_run and text(state.get("run_id")) != self.run_id:
            # Workers answer from the current run's history; a closed run of the chain
            # would get the current run's answer, so refuse rather than mislead.
            raise InvalidArgumentError(
                f"run {self.run_id} of workflow {self.id!r} is not its current run: "
                "queries reach the current run only")
        task_queue = state["task_queue"].decode()
        keys = self.client.keys
        request_id = uuid.uuid4().hex
        request = QueryRequest(
            workflow_id=self.id,
            name=name,
            args=encoded_args,
            reply=keys.query_reply(request_id),
            timeout_ms=int(timeout * 1000),
            request_id=request_id,
        )
        fields: dict[Any, Any] = encode_request(request)  # redis-py's own field types
        redis = self.client.redis
        reply: Any = None
        owner = state.get("sticky", b"").decode()
        # The worker that owns the workflow answers from its cache; its stream exists
        # only while it lives (NOMKSTREAM: no owner stream, no request there). If it does
        # not answer within its sticky timeout, any worker may (docs/design-notes.md).
        if owner and await redis.xadd(keys.sticky_queries(task_queue, owner), fields,
                                      maxlen=10000, approximate=True, nomkstream=True):
            owner_s = int(state.get("sticky_ms", b"1000")) / 1000
            reply = await redis.blpop([request.reply], timeout=min(timeout, owner_s))
        if reply is None:
            await redis.xadd(keys.queries(task_queue), fields, maxlen=10000, approximate=True)
            left = timeout - (time.monotonic() - asked_at)
            reply = await redis.blpop([request.reply], timeout=max(left, 0.01))
        if reply is None:
            await self.client.redis.delete(request.reply)
            live = await live_workers(self.client.redis, keys, task_queue)
            hint = "" if live else f" (no live worker polls task queue {task_queue!r})"
            raise QueryTimeoutError(f"no worker answered query {name!r} within {timeout}s{hint}")
        answer = decode_answer(reply[1])
        if answer.status is QueryStatus.OK:
            return hints.decode_result(self.client.codec.decode(answer.payload))
        if answer.status is QueryStatus.UNKNOWN_QUERY:
            raise UnknownQueryError(name, list(answer.known))
        if answer.status is QueryStatus.NOT_FOUND:
            raise WorkflowNotFoundError(self.id)
        raise QueryFailedError(answer.message)

    async def cancel(self, reason: str = "") -> None:
        if chain := interception.intercepting(self.client.outbound_interceptor):
            return await chain.cancel_workflow(CancelWorkflowInput(self.id, self.run_id, reason))
        request_id = uuid.uuid4().hex
        await self._to_chain(
            f"cancel workflow {self.id!r}",
            lambda run: self._store.cancel(self.id, run, reason, request_id),
        )

    async def terminate(self, reason: str = "") -> None:
        if chain := interception.intercepting(self.client.outbound_interceptor):
            return await chain.terminate_workflow(
                TerminateWorkflowInput(self.id, self.run_id, reason))
        request_id = uuid.uuid4().hex
        await self._to_chain(
            f"terminate workflow {self.id!r}",
            lambda run: self._store.terminate(self.id, run, reason, request_id),
        )

    async def _to_chain(self, what: str, call: Callable[[str], Awaitable[None]]) -> None:
        """Run `call` on the handle's run; a handle from start_workflow whose run
        continued as new (or a cron run) goes to its chain's current run instead, as
        temporalio's handle does (by its first execution run id)."""
        retry = self.client.retrier.retry
        try:
            await retry(what, lambda: call(self.run_id or ""))
        except WorkflowNotFoundError:
            if self.pinned_run or not self.run_id:
                raise
            run, first = await retry(
                what, lambda: self._store.get_fields(self.id, "run_id", "first_run_id"))
            if run is None or text(run) == self.run_id or text(first) != (
                    self.first_execution_run_id or self.run_id):
                raise
            await retry(what, lambda: call(text(run)))

    async def describe(self) -> WorkflowDescription:
        state, _ = await self.client.retrier.retry(f"describe workflow {self.id!r}",
                                                    self._run_state)
        pending: list[PendingActivity] = []
        for key, value in sorted(state.items()):
            if not key.startswith("act:"):
                continue
            act = json.loads(value)
            if act.get("next_attempt_at"):
                act_state = "BACKOFF"
            elif act.get("started"):
                act_state = "STARTED"
            else:
                act_state = "SCHEDULED"
            pending.append(
                PendingActivity(
                    activity_id=int(key[4:]),
                    activity_type=act.get("type", ""),
                    state=act_state,
                    attempt=int(act.get("attempt", 1)),
                    last_failure=act.get("last_failure"),
                    scheduled_time=parse_time(act.get("scheduled")),
                    last_started_time=parse_time(act.get("started")),
                    next_attempt_time=parse_time(act.get("next_attempt_at")),
                )
            )
        pending.sort(key=lambda p: p.activity_id)
        failure = state.get("last_wft_failure")
        memo = state.get("memo")
        attributes = state.get("search_attributes")
        typed = from_wire(json.loads(attributes) if attributes else None)
        return WorkflowDescription(
            id=self.id,
            run_id=text(state.get("run_id")),
            status=WorkflowExecutionStatus.parse(state["status"]),
            workflow_type=text(state.get("type")),
            task_queue=text(state.get("task_queue")),
            start_time=parse_time(state.get("start_time")),
            close_time=parse_time(state.get("close_time")),
            history_length=int(state.get("next_event_id", b"1")) - 1,
            pending_activities=pending,
            last_workflow_task_failure=json.loads(failure) if failure else None,
            workflow_task_attempt=int(state.get("wft_attempt", b"1")),
            dead_letter_id=dead_letter_id(
                self.client.keys, self.id, state.get("wft"), state.get("wft_dead_letter")
            ),
            last_signal_dropped=text(state.get("last_signal_dropped")) or None,
            memo=memo_from_wire(self.client.codec.decode(memo)) if memo else {},
            first_execution_run_id=text(state.get("first_run_id")) or None,
            continued_run_id=text(state.get("continued_run_id")) or None,
            execution_timeout=_duration(state.get("execution_timeout_ms")),
            run_timeout=_duration(state.get("run_timeout_ms")),
            task_timeout=_duration(state.get("task_timeout_ms")),
            search_attributes=plain(typed),
            typed_search_attributes=typed,
            parent_id=text(state.get("parent_id")) or None,
            parent_run_id=text(state.get("parent_run_id")) or None,
        )

    def fetch_history(self, *, page_size: int = 500) -> HistoryFetch:
        """Every event of the current run (or of the closed run the handle names, while
        kept), payloads decoded: `async for` over it reads them page by page; `await` it
        for a `WorkflowHistory` (temporalio's form)."""
        return HistoryFetch(self.id, lambda: self._history_events(page_size))

    async def _history_events(self, page_size: int) -> AsyncIterator[HistoryEvent]:
        after: bytes | None = None
        retry = self.client.retrier.retry
        what = f"history of workflow {self.id!r}"
        read = self._store.read_history
        if self.pinned_run and self.run_id:
            _, kept = await retry(what, self._run_state)
            if kept:
                client, run_id = self.client, self.run_id
                read = functools.partial(run_chain.read_closed_history, client.redis,
                                         client.keys, run_id)
        while True:
            entries = await retry(what, functools.partial(read, self.id, after, count=page_size))
            if not entries and after is None and not await retry(
                what, lambda: self._store.get_state(self.id)
            ):
                raise WorkflowNotFoundError(self.id)
            for sid, event in entries:
                yield to_history_event(event, self.client.codec)
                after = sid
            if len(entries) < page_size:
                return
