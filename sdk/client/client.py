"""Client and workflow handles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

from engine import dead_letters
from engine import events as ev
from engine.codec import MsgpackCodec, PayloadCodec
from engine.dead_letters import DeadLetter
from engine.durability import Durability
from engine.errors import (
    DurabilityError,
    InvalidArgumentError,
    QueryFailedError,
    QueryTimeoutError,
    RedurableError,
    UnknownQueryError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    from_failure,
)
from engine.functions import load_library
from engine.keys import DEFAULT_PREFIX, DEFAULT_SHARDS, Keys
from engine.query_wire import QueryRequest, QueryStatus, decode_answer, encode_request
from engine.resp import RespPool
from engine.status import WorkflowExecutionStatus
from engine.store import Store
from engine.validate import check_id, check_name, check_task_queue
from sdk._definitions import query_name, signal_name, workflow_type_name
from sdk.client.close_watch import CloseWatcher
from sdk.client.server_url import client_url

_EPOCH = datetime.fromtimestamp(0, tz=UTC)
#: What result() waits past: the run goes on (a continued run in the same keys).
_NOT_FAILED = frozenset({WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW})


def _dt(ms: bytes | str | int | None) -> datetime | None:
    if ms is None or ms == b"":
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _dead_letter_id(
    keys: Keys, workflow_id: str, wft: bytes | None, letter: bytes | None
) -> str | None:
    """The `dlq` id of the run's dead-lettered workflow task (rd_wft_fail notes its
    entry while the run's task state is 'dead'), else None."""
    if wft != b"dead" or not letter:
        return None
    return f"{keys.shard(workflow_id)}/{letter.decode()}"


def _str(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


@dataclass(frozen=True)
class HistoryEvent:
    event_id: int
    type: str
    timestamp: datetime
    attributes: dict[str, Any]


@dataclass(frozen=True)
class PendingActivity:
    activity_id: int
    activity_type: str
    state: str  # SCHEDULED, STARTED or BACKOFF
    attempt: int
    last_failure: dict[str, Any] | None
    scheduled_time: datetime | None
    last_started_time: datetime | None
    next_attempt_time: datetime | None


@dataclass(frozen=True)
class WorkflowExecution:
    """One row of `list_workflows`."""

    id: str
    run_id: str
    status: WorkflowExecutionStatus
    workflow_type: str
    task_queue: str
    start_time: datetime | None
    close_time: datetime | None
    #: The run's workflow task is in the dead letters (it failed in a way no retry
    #: cures, max_deliveries times): its id for `redurable dlq requeue`, else None.
    #: The run stays RUNNING with nothing due until it is requeued or terminated.
    dead_letter_id: str | None = None

    @property
    def cursor(self) -> tuple[int, str]:
        """Pass as `list_workflows(after=...)` to continue after this row: its start
        time (ms, the score of every visibility index) and id."""
        start_ms = (self.start_time - _EPOCH) // timedelta(milliseconds=1) if self.start_time else 0
        return start_ms, self.id


@dataclass(frozen=True, kw_only=True)
class WorkflowDescription(WorkflowExecution):
    """What `describe()` tells: the row, and the run's progress."""

    history_length: int
    pending_activities: list[PendingActivity] = field(default_factory=list)
    last_workflow_task_failure: dict[str, Any] | None = None
    workflow_task_attempt: int = 1
    #: The last signals the workflow dropped (input that does not decode, arguments
    #: that do not fit the handler, no handler of that name) and why, else None.
    last_signal_dropped: str | None = None


async def _check_durability(redis: Redis, durability: Durability) -> None:
    """Run the durability wait once, so a server that cannot provide it (no WAITAOF,
    AOF off, too few replicas) is a clear error at connect, not on every transition."""
    try:
        reply = await redis.execute_command(*durability.command())  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        raise DurabilityError(durability.unsupported_reason(str(exc))) from None
    durability.check(reply)


class Client:
    """Entry point to a namespace. One Redis connection pool, shared by handles."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        shards: int = DEFAULT_SHARDS,
        codec: PayloadCodec | None = None,
        fast: RespPool | None = None,
        durability: str | Durability | None = None,
    ) -> None:
        self.redis = redis
        self.keys = Keys(check_name(prefix, "namespace prefix"), shards)
        self.fast = fast
        #: What every transition waits for (engine/durability.py); None: the server's AOF
        #: and replication settings alone decide what a crash can lose.
        self.durability = Durability.parse(durability)
        self.store = Store(redis, self.keys, fast, self.durability)
        self.codec: PayloadCodec = codec or MsgpackCodec()
        self.close_watcher = CloseWatcher(redis, self.keys)

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        codec: PayloadCodec | None = None,
        shards: int | None = None,
        durability: str | Durability | None = None,
        **redis_kwargs: Any,
    ) -> Client:
        """Connect to `url` and load the engine's functions.

        With no `url`: REDURABLE_URL, else redis://localhost:6379. The CLI's fallback
        is the `redurable dev` server instead (redis://127.0.0.1:6390); set
        REDURABLE_URL to point both at one server (why they differ:
        sdk/client/server_url.py).

        The namespace's shard count is fixed when it is first used (`shards`, default 4)
        and stored in `<prefix>:config`; every client reads it from there, and asking
        for a different one is an error.

        `durability` ("fsync", "replicas:N", "fsync+replicas:N"; default none) makes
        every transition wait for the server's AOF fsync and/or replicas (WAITAOF /
        WAIT); the server is checked for it here (DurabilityError if it cannot)."""
        check_name(prefix, "namespace prefix")
        wanted = Durability.parse(durability)
        if shards is not None and not 1 <= shards <= 1024:
            raise InvalidArgumentError("shards must be between 1 and 1024")
        url = url or client_url()
        # Parsed first: a URL option it refuses (e.g. TLS) then fails before any connection.
        fast = RespPool.from_url(url)
        # A blocking pool: a burst of concurrent calls waits for a connection instead
        # of failing with "Too many connections".
        redis_kwargs.setdefault("max_connections", 200)
        # No read timeout on the pool (redis-py 8 sets 5 s by default): blocking calls
        # (a query's BLPOP, the close watcher's pub/sub read) wait as long as they are
        # told to, and a dead server is seen by the connection closing.
        redis_kwargs.setdefault("socket_timeout", None)
        pool = BlockingConnectionPool.from_url(url, timeout=None, **redis_kwargs)
        redis = Redis.from_pool(pool)  # the client owns the pool: closed with it
        try:
            await load_library(redis)
            config_key = Keys(prefix).config()
            await redis.hsetnx(config_key, "shards", shards or DEFAULT_SHARDS)
            stored = int(await redis.hget(config_key, "shards") or DEFAULT_SHARDS)
            if shards is not None and shards != stored:
                raise InvalidArgumentError(
                    f"namespace {prefix!r} already has {stored} shards, not {shards}"
                )
            if wanted is not None:
                await _check_durability(redis, wanted)
        except BaseException:
            await redis.aclose()
            raise
        return cls(
            redis,
            prefix=prefix,
            shards=stored,
            codec=codec,
            fast=fast,
            durability=wanted,
        )

    async def close(self) -> None:
        await self.close_watcher.close()
        if self.fast is not None:
            await self.fast.close()
        await self.redis.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- workflows --------------------------------------------------------------------
    async def start_workflow(
        self, workflow: Callable[..., Any] | type | str, *args: Any, id: str, task_queue: str
    ) -> WorkflowHandle:
        """Start a run; raises WorkflowAlreadyStartedError if one with `id` is running."""
        workflow_id = check_id(id)
        queue = check_task_queue(task_queue)
        type_name = workflow_type_name(workflow)
        payload = self.codec.encode(list(args))
        run_id = uuid.uuid4().hex
        await self.store.start(workflow_id, run_id, type_name, queue, payload)
        return WorkflowHandle(self, workflow_id, run_id)

    async def execute_workflow(
        self, workflow: Callable[..., Any] | type | str, *args: Any, id: str, task_queue: str
    ) -> Any:
        handle = await self.start_workflow(workflow, *args, id=id, task_queue=task_queue)
        return await handle.result()

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None) -> WorkflowHandle:
        return WorkflowHandle(self, check_id(workflow_id), run_id)

    async def list_workflows(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 100,
        after: tuple[int, str] | None = None,
    ) -> AsyncGenerator[WorkflowExecution, None]:
        """Newest first, across all shards, optionally filtered by status and type.
        Pages through the per-shard start-time indexes with a (score, id) cursor, so
        workflows started in the same millisecond are neither lost nor repeated.
        `after=(start_ms, workflow_id)` resumes after that row (WorkflowExecution.cursor)."""
        if status is not None:
            try:
                status = WorkflowExecutionStatus(status)
            except ValueError:
                raise InvalidArgumentError(
                    f"unknown status {status!r}; one of {', '.join(WorkflowExecutionStatus)}"
                ) from None
        if type is not None:
            check_name(type, "workflow type")
        if page_size < 1:
            raise InvalidArgumentError("page_size must be at least 1")
        if status is not None:
            index = [self.keys.index_status(s, status) for s in range(self.keys.shards)]
        elif type is not None:
            index = [self.keys.index_type(s, type) for s in range(self.keys.shards)]
        else:
            index = [self.keys.index_start(s) for s in range(self.keys.shards)]
        # Order is (score, id) descending: ZREVRANGEBYSCORE's own order, so a shard's
        # truncated reply never leaves out rows that sort before the ones it returned.
        # Scores are compared as numbers.
        cursor: float | None = None  # score of the last row yielded
        yielded_at_cursor: set[bytes] = set()  # ids yielded with that score
        floor: bytes | None = None  # with `after`: ids at the cursor score from it up
        if after is not None:
            cursor, floor = float(after[0]), after[1].encode()
        while True:
            pipe = self.redis.pipeline(transaction=False)
            top = "+inf" if cursor is None else repr(cursor)
            # Rows at the cursor score that get skipped must not crowd out the page.
            skip = len(yielded_at_cursor) if floor is None else 100_000
            for key in index:
                pipe.zrevrangebyscore(key, top, "-inf", start=0, num=page_size + skip,
                                      withscores=True)
            rows = [
                (float(score), member)
                for result in await pipe.execute()
                for member, score in result
                if not (score == cursor and (member in yielded_at_cursor
                                             or (floor is not None and member >= floor)))
            ]
            rows.sort(reverse=True)
            page = rows[:page_size]
            if not page:
                return
            pipe = self.redis.pipeline(transaction=False)
            for _, member in page:
                pipe.hmget(self.keys.workflow(member.decode()), "run_id", "status", "type",
                           "task_queue", "start_time", "close_time", "wft", "wft_dead_letter")
            for (score, member), row in zip(page, await pipe.execute(), strict=True):
                if score != cursor:
                    cursor, yielded_at_cursor, floor = score, set(), None
                yielded_at_cursor.add(member)
                if row[1] is None:
                    continue  # deleted between the index read and now
                execution = WorkflowExecution(
                    id=member.decode(), run_id=_str(row[0]),
                    status=WorkflowExecutionStatus.parse(row[1]),
                    workflow_type=_str(row[2]), task_queue=_str(row[3]),
                    start_time=_dt(row[4]), close_time=_dt(row[5]),
                    dead_letter_id=_dead_letter_id(self.keys, member.decode(), row[6], row[7]),
                )
                if type is not None and execution.workflow_type != type:
                    continue
                yield execution
            if len(rows) <= page_size:
                return

    # --- dead letters (engine/dead_letters.py; `redurable dlq`) ------------------------
    async def list_dead_letters(
        self, *, limit: int | None = None, newest_first: bool = False
    ) -> list[DeadLetter]:
        """Tasks taken off their queues as poison, with the reason, every shard (oldest
        first per shard; with `newest_first`, the newest of all shards first)."""
        if limit is not None and limit < 1:
            raise InvalidArgumentError("limit must be at least 1")
        return await dead_letters.list_dead_letters(
            self.redis, self.keys, limit=limit, newest_first=newest_first
        )

    async def count_dead_letters(self) -> int:
        """How many dead letters the namespace holds (every shard)."""
        return await dead_letters.count_dead_letters(self.redis, self.keys)

    async def requeue_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Put a dead letter ("<shard>/<entry id>") back on its task queue."""
        return await dead_letters.requeue(self.redis, self.keys, dead_letter_id)

    async def drop_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Delete a dead letter for good."""
        return await dead_letters.drop(self.redis, self.keys, dead_letter_id)

    async def _live_workers(self, task_queue: str, within_ms: int = 15000) -> int:
        now_s, now_us = await self.redis.time()
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        return int(
            await self.redis.zcount(self.keys.workers(task_queue), now_ms - within_ms, "+inf")
        )


class WorkflowHandle:
    """A workflow by id (and optionally run id). Cheap: holds no connection."""

    def __init__(self, client: Client, workflow_id: str, run_id: str | None) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id

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

    async def result(self, *, timeout: float | None = None) -> Any:
        """Wait for the run to close (following continue-as-new) and return its result,
        or raise WorkflowFailureError. Blocks on the history stream: no polling."""
        return await asyncio.wait_for(self._result(), timeout) if timeout else await self._result()

    async def _result(self) -> Any:
        watcher = self.client.close_watcher
        while True:
            # Subscribe first, then look: a close between the two still wakes us.
            closed = await watcher.register(self.id)
            try:
                status, result, failure = await self.client.store.get_fields(
                    self.id, "status", "result", "failure"
                )
                if status is None:
                    raise WorkflowNotFoundError(self.id)
                run_status = WorkflowExecutionStatus.parse(status)
                if run_status is WorkflowExecutionStatus.COMPLETED:
                    return self.client.codec.decode(result or b"")
                if run_status not in _NOT_FAILED:
                    text = run_status.value
                    cause = from_failure(json.loads(failure)) if failure else RedurableError(text)
                    raise WorkflowFailureError(f"workflow {self.id} {text.lower()}", cause=cause)
                # Re-check now and then in case a notification was lost with a connection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closed), 30)
            finally:
                watcher.unregister(self.id, closed)

    async def signal(self, signal: Callable[..., Any] | str, *args: Any) -> None:
        """Deliver a signal; raises WorkflowNotFoundError or WorkflowNotRunningError."""
        name = signal_name(signal)
        await self._store.signal(
            self.id, self.run_id or "", name, self.client.codec.encode(list(args))
        )

    async def query(self, query: Callable[..., Any] | str, *args: Any, timeout: float = 5.0) -> Any:
        """Ask a worker to answer a query from the workflow's state (running or closed)."""
        name = query_name(query)
        state = await self._state()
        task_queue = state["task_queue"].decode()
        keys = self.client.keys
        request_id = uuid.uuid4().hex
        request = QueryRequest(
            workflow_id=self.id,
            name=name,
            args=self.client.codec.encode(list(args)),
            reply=keys.query_reply(request_id),
            timeout_ms=int(timeout * 1000),
            request_id=request_id,
        )
        fields: dict[Any, Any] = encode_request(request)  # redis-py's own field types
        await self.client.redis.xadd(keys.queries(task_queue), fields, maxlen=10000,
                                     approximate=True)
        reply: Any = await self.client.redis.blpop([request.reply], timeout=timeout)
        if reply is None:
            await self.client.redis.delete(request.reply)
            live = await self.client._live_workers(task_queue)
            hint = "" if live else f" (no live worker polls task queue {task_queue!r})"
            raise QueryTimeoutError(f"no worker answered query {name!r} within {timeout}s{hint}")
        answer = decode_answer(reply[1])
        if answer.status is QueryStatus.OK:
            return self.client.codec.decode(answer.payload)
        if answer.status is QueryStatus.UNKNOWN_QUERY:
            raise UnknownQueryError(name, list(answer.known))
        if answer.status is QueryStatus.NOT_FOUND:
            raise WorkflowNotFoundError(self.id)
        raise QueryFailedError(answer.message)

    async def cancel(self, reason: str = "") -> None:
        await self._store.cancel(self.id, self.run_id or "", reason)

    async def terminate(self, reason: str = "") -> None:
        await self._store.terminate(self.id, self.run_id or "", reason)

    async def describe(self) -> WorkflowDescription:
        state = await self._state()
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
                    scheduled_time=_dt(act.get("scheduled")),
                    last_started_time=_dt(act.get("started")),
                    next_attempt_time=_dt(act.get("next_attempt_at")),
                )
            )
        pending.sort(key=lambda p: p.activity_id)
        failure = state.get("last_wft_failure")
        return WorkflowDescription(
            id=self.id,
            run_id=_str(state.get("run_id")),
            status=WorkflowExecutionStatus.parse(state["status"]),
            workflow_type=_str(state.get("type")),
            task_queue=_str(state.get("task_queue")),
            start_time=_dt(state.get("start_time")),
            close_time=_dt(state.get("close_time")),
            history_length=int(state.get("next_event_id", b"1")) - 1,
            pending_activities=pending,
            last_workflow_task_failure=json.loads(failure) if failure else None,
            workflow_task_attempt=int(state.get("wft_attempt", b"1")),
            dead_letter_id=_dead_letter_id(
                self.client.keys, self.id, state.get("wft"), state.get("wft_dead_letter")
            ),
            last_signal_dropped=_str(state.get("last_signal_dropped")) or None,
        )


    async def fetch_history(self, *, page_size: int = 500) -> AsyncIterator[HistoryEvent]:
        """Every event of the current run, payloads decoded."""
        after: bytes | None = None
        while True:
            entries = await self._store.read_history(self.id, after, count=page_size)
            if not entries and after is None and not await self._store.get_state(self.id):
                raise WorkflowNotFoundError(self.id)
            for sid, event in entries:
                yield to_history_event(event, self.client.codec)
                after = sid
            if len(entries) < page_size:
                return


def to_history_event(event: ev.Event, codec: PayloadCodec) -> HistoryEvent:
    """Public form of an event: payload attributes decoded with the codec."""
    attributes: dict[str, Any] = {}
    for name, value in event.attributes().items():
        if isinstance(value, bytes):
            try:
                attributes[name] = codec.decode(value)
            except RedurableError:
                attributes[name] = value
        else:
            attributes[name] = value
    return HistoryEvent(
        event_id=event.event_id,
        type=event.type,
        timestamp=datetime.fromtimestamp(event.timestamp / 1000, tz=UTC),
        attributes=attributes,
    )
