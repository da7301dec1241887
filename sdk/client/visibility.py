"""`client.list_workflows(query=...)` and `client.count_workflows(query=...)`: Temporal's
visibility queries (engine/visibility_query.py), answered from the per-shard indexes
(engine/visibility.py). docs/visibility.md."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio.client import Pipeline

from engine import visibility
from engine.errors import InvalidArgumentError
from engine.search_attributes import from_wire, plain
from engine.status import WorkflowExecutionStatus
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

        rows = await client._read_pipelined("list workflows", reads)
        for wf_id, row in zip(page, rows, strict=True):
            if row[1] is not None:
                yield execution_row(client, wf_id, row)


async def count(client: Client, query: str | None) -> WorkflowExecutionCount:
    parsed = parse(query or "")
    total = await client.retrier.retry(
        "count workflows", lambda: visibility.count(client.redis, client.keys, parsed))
    return WorkflowExecutionCount(total)
