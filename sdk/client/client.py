"""The Client: connecting to a namespace, starting and listing workflows, dead letters."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

from engine import dead_letters, run_chain
from engine.cluster_redis import close_redis, cluster_client, is_cluster
from engine.codec import MsgpackCodec, PayloadCodec
from engine.dead_letters import DeadLetter
from engine.durability import Durability
from engine.errors import DurabilityError, InvalidArgumentError
from engine.functions import connection_name, load_library
from engine.keepalive import redis_py_keepalive
from engine.keys import DEFAULT_PREFIX, DEFAULT_SHARDS, Keys
from engine.reconnect import CallStats, Reconnector, RetryConfig
from engine.resp import RespPool
from engine.resp_cluster import ClusterRespPool
from engine.search_attributes import SearchAttributesInput, to_wire
from engine.sentinel import SentinelUrl, is_sentinel_url, sentinel_redis
from engine.start_options import (
    StartOptions,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
    duration_ms,
)
from engine.store import Store
from engine.task_token import ActivityRef, decode_task_token
from engine.validate import check_id, check_name, check_task_queue
from sdk import _interception as interception
from sdk._definitions import signal_name, workflow_definition, workflow_type_name
from sdk._memo import memo_to_wire
from sdk._metrics import metrics_for
from sdk._payload_hints import hints_of, untyped, with_result
from sdk.client import visibility
from sdk.client.async_activity import AsyncActivityHandle
from sdk.client.close_watch import CloseWatcher
from sdk.client.handle import WorkflowHandle
from sdk.client.schedule_types import Schedule, ScheduleListDescription
from sdk.client.schedules import ScheduleHandle, create_schedule, list_schedules
from sdk.client.server_url import client_url
from sdk.client.types import WorkflowExecution
from sdk.client.update_handle import update_watcher
from sdk.client.visibility import WorkflowExecutionCount
from sdk.interceptor import ClientInterceptor


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
        retry_config: RetryConfig | None = None,
        interceptors: Sequence[ClientInterceptor] = (),
        run_retention_ms: int | None = None,
    ) -> None:
        self.redis = redis
        #: How long closed runs of a run chain are kept (the namespace's setting; None:
        #: the engine's default, engine/limits.py DEFAULT_RUN_RETENTION_MS).
        self.run_retention_ms = run_retention_ms
        self.keys = Keys(check_name(prefix, "namespace prefix"), shards)
        self.fast = fast
        #: What every transition waits for (engine/durability.py); None: the server's AOF
        #: and replication settings alone decide what a crash can lose.
        self.durability = Durability.parse(durability)
        self.store = Store(redis, self.keys, fast, self.durability)
        self.codec: PayloadCodec = codec or MsgpackCodec()
        #: Retries calls through a server restart or failover (engine/reconnect.py).
        self.retrier = Reconnector(retry_config)
        self.close_watcher = CloseWatcher(redis, self.keys, self.retrier.config)
        #: Wakes update waiters (sdk/client/update_handle.py).
        self.update_watcher = update_watcher(redis, self.keys, self.retrier.config)
        #: Interceptors (sdk/interceptor.py); workers of this client use those that are
        #: also worker interceptors.
        self.interceptors = list(interceptors)
        self.outbound_interceptor = interception.client_chain(self, self.interceptors)

    @property
    def connection_stats(self) -> CallStats:
        """What outages did to this client's calls: interrupted, recovered, failed."""
        return self.retrier.stats

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        codec: PayloadCodec | None = None,
        shards: int | None = None,
        durability: str | Durability | None = None,
        retry_config: RetryConfig | None = None,
        metrics_registry: Any = None,
        interceptors: Sequence[ClientInterceptor] = (),
        run_retention: timedelta | float | None = None,
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
        WAIT); the server is checked for it here (DurabilityError if it cannot).

        `redis+sentinel://host:26379[,host2:26379]/service_name` connects to the
        primary that the Sentinels monitor under that name, and follows it when a
        failover promotes a replica; `rediss+sentinel://` does the same over TLS.

        Once connected, the client rides through a server restart or failover: calls
        that are safe to repeat (reads; start, signal, cancel and terminate, which the
        server deduplicates by request id) are retried for up to `retry_config`'s
        `max_elapsed_time_millis` (default 30 s), other calls raise
        ServerUnavailableError when their connection is lost in flight. The first
        connection is not retried: no server at `url` fails here at once.

        `metrics_registry` (a prometheus_client CollectorRegistry) gets the client's
        request metrics (docs/metrics.md). `interceptors` wrap the client's calls
        (docs/interceptors.md).

        `run_retention` sets how long the namespace keeps the closed runs of a run chain
        (continue-as-new, cron) readable by run id (default 7 days; 0 keeps none). It is
        stored in `<prefix>:config` for every client, and applies to chains started
        from then on."""
        check_name(prefix, "namespace prefix")
        observer = None if metrics_registry is None else metrics_for(
            metrics_registry).call_observer(prefix)
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
        # ...and a vanished host (no FIN, no RST) is seen by TCP keepalive (engine/keepalive.py).
        redis_py_keepalive(redis_kwargs)
        # Connections named after the library version they call: an admin's prune
        # keeps the versions live processes use (engine/functions.py).
        redis_kwargs.setdefault("client_name", connection_name())
        if is_sentinel_url(url):  # the primary wherever it moves (engine/sentinel.py)
            redis = sentinel_redis(SentinelUrl.parse(url), timeout=None, **redis_kwargs)
        elif await is_cluster(url, **redis_kwargs):  # slot routing on both paths
            fast = ClusterRespPool.from_url(url)
            redis = cluster_client(url, **redis_kwargs)
        else:
            pool = BlockingConnectionPool.from_url(url, timeout=None, **redis_kwargs)
            redis = Redis.from_pool(pool)  # the client owns the pool: closed with it
        fast.client_name = connection_name()
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
            retention = await run_chain.configure_retention(redis, Keys(prefix), run_retention)
        except BaseException:
            await close_redis(redis)
            raise
        client = cls(
            redis,
            prefix=prefix,
            shards=stored,
            codec=codec,
            fast=fast,
            durability=wanted,
            retry_config=retry_config,
            interceptors=interceptors,
            run_retention_ms=retention,
        )
        client.store.call_observer = observer
        return client

    async def close(self) -> None:
        await self.close_watcher.close()
        await self.update_watcher.close()
        if self.fast is not None:
            await self.fast.close()
        await close_redis(self.redis)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- workflows --------------------------------------------------------------------
    async def start_workflow(
        self,
        workflow: Callable[..., Any] | type | str,
        *positional: Any,
        id: str,
        task_queue: str,
        result_type: Any = None,
        args: Sequence[Any] | None = None,
        execution_timeout: timedelta | float | None = None,
        run_timeout: timedelta | float | None = None,
        task_timeout: timedelta | float | None = None,
        id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy: WorkflowIDConflictPolicy | None = None,
        memo: Mapping[str, Any] | None = None,
        start_signal: Callable[..., Any] | str | None = None,
        start_signal_args: Sequence[Any] = (),
        search_attributes: SearchAttributesInput | None = None,
        cron_schedule: str = "",
    ) -> WorkflowHandle:
        """Start a run; raises WorkflowAlreadyStartedError if one with `id` is running
        (or, by `id_reuse_policy`, closed).

        Given as its class or run method, the workflow's parameter hints check the
        arguments here (`PayloadError` naming the parameter), and the handle's
        `result()` converts to the run method's return hint; `result_type` sets that
        type where there is no hint (a workflow named by a string). The arguments go
        after the workflow, or as `args=[...]` (temporalio's form), not both.

        Options, as temporalio names them: `execution_timeout` (the whole run chain,
        across continue-as-new), `run_timeout` (this run), `task_timeout` (one workflow
        task; default the worker's): a run past its timeout ends TIMED_OUT and
        `result()` raises WorkflowFailureError(cause=WorkflowTimeoutError). `memo`:
        values the run carries (`describe().memo`, `workflow.memo()`).
        `id_reuse_policy` decides about a closed run of the same id,
        `id_conflict_policy` about a running one. `start_signal` (+
        `start_signal_args`): signal-with-start, in one atomic call: start the
        workflow unless it runs, then deliver the signal (to the running run by
        default: USE_EXISTING). `search_attributes`: what list_workflows(query=...)
        finds the run by (a dict, or temporalio's TypedSearchAttributes; docs/visibility.md).
        `cron_schedule` ("*/5 * * * *", or 6 fields with seconds first; UTC): each run
        starts at a cron time, the first one too, as a new run of the chain
        (`workflow.info().cron_schedule`), until the workflow is terminated or cancelled;
        `result()` waits for the chain's end."""
        if chain := interception.intercepting(self.outbound_interceptor):
            return await interception.start_workflow(chain, locals())
        workflow_id = check_id(id)
        queue = check_task_queue(task_queue)
        type_name = workflow_type_name(workflow)
        hints = with_result(
            untyped(type_name) if isinstance(workflow, str)
            else hints_of(workflow_definition(workflow).run_fn, method=True),
            result_type,
        )
        if args is not None and positional:
            raise InvalidArgumentError("give the workflow's arguments positionally or as args=")
        payload = self.codec.encode(hints.encode_args(list(args or positional)))
        options = StartOptions(
            id_reuse_policy=id_reuse_policy,
            id_conflict_policy=id_conflict_policy,
            execution_timeout_ms=duration_ms(execution_timeout, "execution_timeout"),
            run_timeout_ms=duration_ms(run_timeout, "run_timeout"),
            task_timeout_ms=duration_ms(task_timeout, "task_timeout"),
            start_signal="" if start_signal is None else signal_name(start_signal),
            header=interception.outgoing_header(),
            run_retention_ms=self.run_retention_ms,
            **run_chain.cron_start_options(cron_schedule),
        )
        memo_payload = b"" if memo is None else self.codec.encode(memo_to_wire(memo))
        attributes = to_wire(search_attributes)
        signal_payload = b""
        if start_signal is not None:
            signal_hints = (untyped(options.start_signal) if isinstance(start_signal, str)
                            else hints_of(start_signal, method=True))
            signal_payload = self.codec.encode(signal_hints.encode_args(list(start_signal_args)))
        elif start_signal_args:
            raise InvalidArgumentError("start_signal_args without a start_signal")
        # The run id is the start's request id: a start retried after a lost reply is
        # answered as the first one was (engine/reconnect.py).
        run_id = uuid.uuid4().hex
        started = await self.retrier.retry(
            f"start workflow {workflow_id!r}",
            lambda: self.store.start(
                workflow_id, run_id, type_name, queue, payload, options, memo_payload,
                signal_payload, json.dumps(attributes) if attributes else "",
            ),
        )
        return WorkflowHandle(self, workflow_id, started, result_type=hints.result,
                              first_execution_run_id=started)

    async def execute_workflow(
        self,
        workflow: Callable[..., Any] | type | str,
        *args: Any,
        id: str,
        task_queue: str,
        result_type: Any = None,
        **options: Any,
    ) -> Any:
        """start_workflow (same options), then wait for the result."""
        handle = await self.start_workflow(
            workflow, *args, id=id, task_queue=task_queue, result_type=result_type, **options
        )
        return await handle.result()

    def get_workflow_handle(
        self,
        workflow_id: str,
        *,
        run_id: str | None = None,
        first_execution_run_id: str | None = None,
        result_type: Any = None,
    ) -> WorkflowHandle:
        """A handle to an existing workflow; `result()` converts to `result_type`. With
        `run_id`, describe and the history are that run's, also once it closed in a run
        chain (while the namespace's run retention keeps it)."""
        return WorkflowHandle(self, check_id(workflow_id), run_id, result_type=result_type,
                              first_execution_run_id=first_execution_run_id,
                              pinned_run=run_id is not None)

    def get_workflow_handle_for(
        self, workflow: Callable[..., Any] | type, workflow_id: str, *, run_id: str | None = None
    ) -> WorkflowHandle:
        """A handle whose `result()` converts to the return hint of `workflow`'s run
        method (given as the class or the method)."""
        run_fn = workflow_definition(workflow).run_fn
        return WorkflowHandle(self, check_id(workflow_id), run_id,
                              result_type=hints_of(run_fn, method=True).result)

    def get_async_activity_handle(
        self,
        *,
        task_token: bytes | None = None,
        workflow_id: str | None = None,
        run_id: str | None = None,
        activity_id: int | str | None = None,
    ) -> AsyncActivityHandle:
        """A handle to complete, fail, heartbeat or report the cancellation of an
        activity whose function called `activity.raise_complete_async()`: by the
        `task_token` of its attempt (`activity.info().task_token`), or by
        `workflow_id` + `activity_id` (+ `run_id`, else the current run's) for its
        current attempt."""
        if task_token is not None:
            if workflow_id is not None or run_id is not None or activity_id is not None:
                raise InvalidArgumentError("give a task_token, or workflow_id + activity_id")
            return AsyncActivityHandle(self, decode_task_token(task_token))
        if workflow_id is None or activity_id is None:
            raise InvalidArgumentError("give a task_token, or workflow_id + activity_id")
        try:
            seq = int(activity_id)
        except ValueError:
            raise InvalidArgumentError(f"activity_id {activity_id!r} is not a number") from None
        if seq < 1:
            raise InvalidArgumentError("activity_id must be a positive number")
        run = "" if run_id is None else check_id(run_id, "run id")
        return AsyncActivityHandle(self, ActivityRef(check_id(workflow_id), run, seq))

    async def list_workflows(
        self,
        query: str | None = None,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 100,
        after: tuple[int, str] | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[WorkflowExecution, None]:
        """With `query` (Temporal's visibility query: `WorkflowType = 'Order' AND
        CustomerId = 'c-1' ORDER BY StartTime ASC`; docs/visibility.md): the matches,
        at most `limit`; a bad query raises InvalidQueryError naming the position.

        Without: newest first, across all shards, optionally filtered by status and type.
        Pages through the per-shard start-time indexes with a (score, id) cursor, so
        workflows started in the same millisecond are neither lost nor repeated.
        `after=(start_ms, workflow_id)` resumes after that row (WorkflowExecution.cursor)."""
        if query is not None:
            if status is not None or type is not None or after is not None:
                raise InvalidArgumentError("give a query, or status/type/after, not both")
            async for row in visibility.list_by_query(self, query, page_size=page_size,
                                                      limit=limit):
                yield row
            return
        async for row in visibility.list_by_index(self, status=status, type=type,
                                                  page_size=page_size, after=after,
                                                  limit=limit):
            yield row

    async def count_workflows(self, query: str | None = None) -> WorkflowExecutionCount:
        """How many workflows match `query` (all, without one): temporalio's
        WorkflowExecutionCount, `.count`. docs/visibility.md."""
        return await visibility.count(self, query)

    # --- schedules (sdk/client/schedules.py, docs/schedules.md) -------------------------
    async def create_schedule(self, id: str, schedule: Schedule) -> ScheduleHandle:
        """Create a schedule; ScheduleAlreadyRunningError if one with `id` exists."""
        return await create_schedule(self, id, schedule)

    def get_schedule_handle(self, id: str) -> ScheduleHandle:
        return ScheduleHandle(self, id)

    async def list_schedules(self) -> AsyncIterator[ScheduleListDescription]:
        """Every schedule of the namespace (`async for`), shard by shard."""
        async for schedule in list_schedules(self):
            yield schedule

    # --- dead letters (engine/dead_letters.py; `redurable dlq`) ------------------------
    async def list_dead_letters(
        self, *, limit: int | None = None, newest_first: bool = False
    ) -> list[DeadLetter]:
        """Tasks taken off their queues as poison, with the reason: every shard's, then
        every task queue's query requests' (oldest first per stream; with
        `newest_first`, the newest of all first)."""
        if limit is not None and limit < 1:
            raise InvalidArgumentError("limit must be at least 1")
        return await self.retrier.retry("list dead letters", lambda: dead_letters.list_dead_letters(
            self.redis, self.keys, limit=limit, newest_first=newest_first
        ))

    async def count_dead_letters(self) -> int:
        """How many dead letters the namespace holds (every shard, every query stream)."""
        return await self.retrier.retry(
            "count dead letters", lambda: dead_letters.count_dead_letters(self.redis, self.keys)
        )

    async def requeue_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Put a dead letter ("<shard>/<entry id>", "queries:<task queue>/<entry id>")
        back on its task queue. Not retried after a lost connection (twice would queue
        it twice): ServerUnavailableError."""
        return await self.retrier.once(
            f"requeue dead letter {dead_letter_id}",
            lambda: dead_letters.requeue(self.redis, self.keys, dead_letter_id),
            self.redis.ping,
        )

    async def drop_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Delete a dead letter for good. Not retried after a lost connection (a retry
        of a drop that happened reports it missing): ServerUnavailableError."""
        return await self.retrier.once(
            f"drop dead letter {dead_letter_id}",
            lambda: dead_letters.drop(self.redis, self.keys, dead_letter_id),
            self.redis.ping,
        )
