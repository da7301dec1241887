"""What the web UI reads from Redis beyond the Client's own API: filtered pages of the
visibility indexes, counts per status, task-queue backlogs and workers; dead letters come
through the Client (engine/dead_letters.py, shared with `redurable dlq`).

Everything here only reads. Functions take the Client and return plain dataclasses, so
the routes stay thin and these can be tested on fakeredis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.dead_letters import DeadLetter
from engine.errors import InvalidArgumentError
from engine.keys import GROUP
from engine.status import WorkflowExecutionStatus
from sdk.client.client import Client
from sdk.client.registry import LIVE_WITHIN_MS, worker_infos
from sdk.client.types import WorkflowExecution

#: Rows a filtered page may examine before it stops and offers "more": an id-prefix
#: filter is applied while walking the start-time index, so a rare prefix must not
#: make one request read the whole namespace.
SCAN_LIMIT = 5_000


@dataclass(frozen=True)
class Filters:
    """The workflow list's filters; empty fields filter nothing. A visibility `query`
    (docs/visibility.md) is applied first; the other filters narrow its matches."""

    query: str = ""
    status: str | None = None
    workflow_type: str | None = None
    id_prefix: str = ""
    started_from: datetime | None = None
    started_to: datetime | None = None


@dataclass(frozen=True)
class Page:
    rows: list[WorkflowExecution]
    #: Cursor of the last row when more may follow (`after` of the next page).
    next_cursor: tuple[int, str] | None
    #: True when the page stopped at SCAN_LIMIT rows examined, not at its size.
    scan_limited: bool = False


def parse_cursor(text: str) -> tuple[int, str] | None:
    """`<start ms>:<workflow id>` as put in "next page" links; empty means the top."""
    if not text:
        return None
    ms, sep, workflow_id = text.partition(":")
    if not sep or not ms.isdigit() or not workflow_id:
        raise InvalidArgumentError(f"malformed page cursor {text!r}")
    return int(ms), workflow_id


def format_cursor(cursor: tuple[int, str]) -> str:
    return f"{cursor[0]}:{cursor[1]}"


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


async def list_page(
    client: Client, filters: Filters, *, page_size: int = 50, after: tuple[int, str] | None = None
) -> Page:
    """One page of workflows, newest first, matching every filter."""
    if filters.query:
        return await _query_page(client, filters, page_size=page_size, after=after)
    if after is None and filters.started_to is not None:
        # Resume "after" a row one millisecond past the bound: rows started at or
        # before it come next (the Client's cursor skips ids at the cursor's own score).
        after = (_ms(filters.started_to) + 1, "")
    floor = _ms(filters.started_from) if filters.started_from is not None else None
    rows: list[WorkflowExecution] = []
    scanned = 0
    last: WorkflowExecution | None = None
    async for execution in client.list_workflows(
        status=filters.status, type=filters.workflow_type, page_size=page_size + 1, after=after
    ):
        if floor is not None and execution.cursor[0] < floor:
            return Page(rows, None)
        scanned += 1
        last = execution
        if execution.id.startswith(filters.id_prefix):
            if len(rows) == page_size:
                return Page(rows, rows[-1].cursor)
            rows.append(execution)
        if scanned >= SCAN_LIMIT:
            return Page(rows, last.cursor, scan_limited=True)
    return Page(rows, None)


async def _query_page(
    client: Client, filters: Filters, *, page_size: int, after: tuple[int, str] | None
) -> Page:
    """A page of a query's matches. The cursor of a query page is (rows before it, "query"):
    the query's own order need not be the start-time order the other cursor follows."""
    skip = after[0] if after is not None else 0
    floor = _ms(filters.started_from) if filters.started_from is not None else None
    ceiling = _ms(filters.started_to) if filters.started_to is not None else None
    rows: list[WorkflowExecution] = []
    seen = 0
    async for execution in client.list_workflows(filters.query, page_size=page_size + 1):
        if not _keeps(filters, execution, floor, ceiling):
            continue
        seen += 1
        if seen <= skip:
            continue
        if len(rows) == page_size:
            return Page(rows, (skip + page_size, "query"))
        rows.append(execution)
    return Page(rows, None)


def _keeps(filters: Filters, row: WorkflowExecution, floor: int | None,
           ceiling: int | None) -> bool:
    start = row.cursor[0]
    return ((filters.status is None or row.status == filters.status)
            and (filters.workflow_type is None or row.workflow_type == filters.workflow_type)
            and row.id.startswith(filters.id_prefix)
            and (floor is None or start >= floor) and (ceiling is None or start <= ceiling))


async def status_counts(client: Client) -> dict[str, int]:
    """Workflows of the namespace per status (every status, zeros included)."""
    keys = client.keys
    pipe = client.redis.pipeline(transaction=False)
    for status in WorkflowExecutionStatus:
        for shard in range(keys.shards):
            pipe.zcard(keys.index_status(shard, status))
    counts = await pipe.execute()
    return {
        status: sum(counts[i * keys.shards : (i + 1) * keys.shards])
        for i, status in enumerate(WorkflowExecutionStatus)
    }


async def workflow_types(client: Client) -> list[str]:
    """Workflow types registered by the workers of any task queue (for the filter)."""
    types: set[str] = set()
    for queue in await task_queue_names(client):
        for info in (await worker_infos(client, queue)).values():
            types.update(info.get("workflows", {}))
    return sorted(types)


async def registered_queries(client: Client, task_queue: str, workflow_type: str) -> list[str]:
    """Query names the workers of `task_queue` registered for `workflow_type` (their
    liveness beat writes them to the worker-info hash)."""
    names: set[str] = set()
    for info in (await worker_infos(client, task_queue)).values():
        names.update(info.get("workflows", {}).get(workflow_type, []))
    return sorted(names)




async def task_queue_names(client: Client) -> list[str]:
    members: set[Any] = await client.redis.smembers(client.keys.task_queues())
    return sorted(m.decode(errors="replace") for m in members)


# --- task queues ----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamStats:
    """Workflow or activity tasks of one task queue, summed over its shard streams."""

    #: Entries not yet delivered to any worker; None when the server cannot tell
    #: (a stream with deleted entries in the undelivered range).
    backlog: int | None = 0
    #: Delivered to a worker and not yet acknowledged.
    pending: int = 0
    #: Age (ms) of the oldest task not yet delivered, if any.
    oldest_waiting_ms: int | None = None
    #: Pending entries per worker (consumer name).
    pending_by_worker: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerRow:
    worker_id: str
    last_beat: datetime
    alive: bool
    host: str
    pid: int | None
    workflows: list[str]
    activities: list[str]


@dataclass(frozen=True)
class QueueStats:
    name: str
    workflow_tasks: StreamStats
    activity_tasks: StreamStats
    workers: list[WorkerRow]


async def server_ms(client: Client) -> int:
    """The server's clock: stream ids and beats are written with it or close to it."""
    seconds, micros = await client.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def queue_stats(client: Client, task_queue: str) -> QueueStats:
    keys = client.keys
    now = await server_ms(client)
    wf = [keys.workflow_tasks(s, task_queue) for s in range(keys.shards)]
    act = [keys.activity_tasks(s, task_queue) for s in range(keys.shards)]
    return QueueStats(
        name=task_queue,
        workflow_tasks=await _stream_stats(client, wf, now),
        activity_tasks=await _stream_stats(client, act, now),
        workers=await _workers(client, task_queue, now),
    )


async def _stream_stats(client: Client, streams: list[str], now: int) -> StreamStats:
    redis = client.redis
    backlog: int | None = 0
    pending = 0
    oldest: int | None = None
    by_worker: dict[str, int] = {}
    for stream in streams:
        if not await redis.exists(stream):
            continue  # the shard never had a task of this queue
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
        group = next((g for g in groups if g["name"] == GROUP.encode()), None)
        if group is None:
            # No worker ever polled this stream (workers create the group): all waits.
            if backlog is not None:
                backlog += int(await redis.xlen(stream))
            first_waiting: Any = await redis.xrange(stream, "-", "+", count=1)
        else:
            lag = group.get("lag")
            backlog = None if lag is None or backlog is None else backlog + int(lag)
            pending += int(group["pending"])
            last = group["last-delivered-id"]
            first_waiting = await redis.xrange(stream, b"(" + last, "+", count=1)
        if first_waiting:
            age = now - int(first_waiting[0][0].split(b"-")[0])
            oldest = age if oldest is None else max(oldest, age)
        if group is not None and int(group["pending"]):
            summary: dict[str, Any] = await redis.xpending(stream, GROUP)
            for consumer in summary.get("consumers", []):
                name = consumer["name"]
                name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
                by_worker[name] = by_worker.get(name, 0) + int(consumer["pending"])
    return StreamStats(backlog, pending, oldest, by_worker)


async def _workers(client: Client, task_queue: str, now: int) -> list[WorkerRow]:
    beats: list[Any] = await client.redis.zrange(
        client.keys.workers(task_queue), 0, -1, withscores=True
    )
    infos = await worker_infos(client, task_queue)
    rows = []
    for raw_id, score in beats:
        worker_id = raw_id.decode(errors="replace")
        info = infos.get(worker_id, {})
        pid = info.get("pid")
        rows.append(
            WorkerRow(
                worker_id=worker_id,
                last_beat=datetime.fromtimestamp(score / 1000, tz=UTC),
                alive=now - score < LIVE_WITHIN_MS,
                host=str(info.get("host", "")),
                pid=pid if isinstance(pid, int) else None,
                workflows=sorted(info.get("workflows", {})),
                activities=sorted(info.get("activities", [])),
            )
        )
    rows.sort(key=lambda w: w.last_beat, reverse=True)
    return rows


# --- dead letters ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter as the task-queue page shows it (read by engine/dead_letters.py)."""

    letter: DeadLetter
    time: datetime
    #: The dead task's own fields as text; payloads only when they are text.
    fields: dict[str, str]


def _text(value: bytes, limit: int = 200) -> str:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return f"<{len(value)} bytes>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def dead_letters(client: Client, *, limit: int = 50) -> tuple[int, list[DeadLetterRow]]:
    """(total count, newest `limit` entries) over every shard's dead-letter stream."""
    total = await client.count_dead_letters()
    letters = await client.list_dead_letters(limit=limit, newest_first=True)
    return total, [
        DeadLetterRow(
            letter=letter,
            time=datetime.fromtimestamp(letter.time_ms / 1000, tz=UTC),
            fields={k: _text(v) for k, v in letter.fields.items()},
        )
        for letter in letters
    ]
