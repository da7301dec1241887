"""`client.list_workflows` and `client.count_workflows(query=...)`: Temporal's
visibility queries (engine/visibility_query.py), answered from the per-shard indexes
(engine/visibility.py), and the listing without a query, newest first through the
per-shard start-time, status or type indexes. docs/visibility.md."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio.client import Pipeline

from engine import visibility
from engine.errors import InvalidArgumentError
from engine.search_attributes import from_wire, plain
from engine.status import WorkflowExecutionStatus
from engine.validate import check_name
from engine.visibility_query import parse
from sdk.client.types import WorkflowExecution, dead_letter_id, parse_time, text

if TYPE_CHECKING:
    from sdk.client.client import Client

#: What a listed row reads of a run's state hash.
ROW_FIELDS = ("run_id", "status", "type", "task_queue", "start_time", "close_time", "wft",
              "wft_dead_letter", "search_attributes")


@dataclass(frozen=True)
class WorkflowExecutionCountAggregationGroup:
    """temporalio's shape; redurable's count has no GROUP BY, so there are none."""

    count: int
    group_values: Sequence[Any]


@dataclass(frozen=True)
class WorkflowExecutionCount:
    """What `count_workflows` returns (temporalio's shape)."""

    count: int
    groups: Sequence[WorkflowExecutionCountAggregationGroup] = field(default_factory=list)


def execution_row(client: Client, workflow_id: str, row: Sequence[Any]) -> WorkflowExecution:
    """A listed row from ROW_FIELDS as read."""
    typed = from_wire(json.loads(row[8]) if row[8] else None)
    return WorkflowExecution(
        id=workflow_id, run_id=text(row[0]),
        status=WorkflowExecutionStatus.parse(row[1]),
        workflow_type=text(row[2]), task_queue=text(row[3]),
        start_time=parse_time(row[4]), close_time=parse_time(row[5]),
        dead_letter_id=dead_letter_id(client.keys, workflow_id, row[6], row[7]),
        search_attributes=plain(typed), typed_search_attributes=typed,
    )


async def list_by_query(
    client: Client, query: str, *, page_size: int, limit: int | None
) -> AsyncGenerator[WorkflowExecution, None]:
    """The query's matches in its order (ORDER BY StartTime DESC unless it says else).
    Finds every match's id first (index reads per shard), then reads the rows a page at
    a time; a run deleted meanwhile is left out."""
    if page_size < 1:
        raise InvalidArgumentError("page_size must be at least 1")
    if limit is not None and limit < 1:
        raise InvalidArgumentError("limit must be at least 1")
    parsed = parse(query)
    matches = await client.retrier.retry(
        "list workflows", lambda: visibility.search(client.redis, client.keys, parsed))
    if limit is not None:
        matches = matches[:limit]
    for start in range(0, len(matches), page_size):
        page = [wf_id for _, wf_id in matches[start : start + page_size]]

        def reads(pipe: Pipeline, page: list[str] = page) -> None:
            for wf_id in page:
                pipe.hmget(client.keys.workflow(wf_id), *ROW_FIELDS)

        rows = await read_pipelined(client, "list workflows", reads)
        for wf_id, row in zip(page, rows, strict=True):
            if row[1] is not None:
                yield execution_row(client, wf_id, row)


async def list_by_index(
    client: Client,
    *,
    status: str | None,
    type: str | None,
    page_size: int,
    after: tuple[int, str] | None,
    limit: int | None,
) -> AsyncGenerator[WorkflowExecution, None]:
    """`list_workflows` without a query: newest first through the per-shard start-time
    (or status, or type) indexes, with a (score, id) cursor (see its docstring)."""
    listed = 0
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
        index = [client.keys.index_status(s, status) for s in range(client.keys.shards)]
    elif type is not None:
        index = [client.keys.index_type(s, type) for s in range(client.keys.shards)]
    else:
        index = [client.keys.index_start(s) for s in range(client.keys.shards)]
    # Order is (score, id) descending: ZREVRANGEBYSCORE's own order, so a shard's
    # truncated reply never leaves out rows that sort before the ones it returned.
    # Scores are compared as numbers.
    cursor: float | None = None  # score of the last row yielded
    yielded_at_cursor: set[bytes] = set()  # ids yielded with that score
    floor: bytes | None = None  # with `after`: ids at the cursor score from it up
    if after is not None:
        cursor, floor = float(after[0]), after[1].encode()
    while True:
        top = "+inf" if cursor is None else repr(cursor)
        # Rows at the cursor score that get skipped must not crowd out the page.
        skip = len(yielded_at_cursor) if floor is None else 100_000

        def index_reads(pipe: Pipeline, top: str = top, skip: int = skip) -> None:
            for key in index:
                pipe.zrevrangebyscore(key, top, "-inf", start=0, num=page_size + skip,
                                      withscores=True)

        results = await read_pipelined(client, "list workflows", index_reads)
        rows = [
            (float(score), member)
            for result in results
            for member, score in result
            if not (score == cursor and (member in yielded_at_cursor
                                         or (floor is not None and member >= floor)))
        ]
        rows.sort(reverse=True)
        page = rows[:page_size]
        if not page:
            return

        def state_reads(pipe: Pipeline, page: list[tuple[float, bytes]] = page) -> None:
            for _, member in page:
                pipe.hmget(client.keys.workflow(member.decode()), *ROW_FIELDS)

        states = await read_pipelined(client, "list workflows", state_reads)
        for (score, member), row in zip(page, states, strict=True):
            if score != cursor:
                cursor, yielded_at_cursor, floor = score, set(), None
            yielded_at_cursor.add(member)
            if row[1] is None:
                continue  # deleted between the index read and now
            execution = execution_row(client, member.decode(), row)
            if type is not None and execution.workflow_type != type:
                continue
            yield execution
            listed += 1
            if limit is not None and listed >= limit:
                return
        if len(rows) <= page_size:
            return


async def count(client: Client, query: str | None) -> WorkflowExecutionCount:
    parsed = parse(query or "")
    total = await client.retrier.retry(
        "count workflows", lambda: visibility.count(client.redis, client.keys, parsed))
    return WorkflowExecutionCount(total)


async def read_pipelined(
    client: Client, what: str, build: Callable[[Pipeline], None]
) -> list[Any]:
    """Reads queued by `build` in one round trip, retried through an outage (a
    redis-py pipeline forgets its commands when it runs: each attempt builds one)."""

    async def attempt() -> list[Any]:
        pipe = client.redis.pipeline(transaction=False)
        build(pipe)
        return list(await pipe.execute())

    return await client.retrier.retry(what, attempt)
