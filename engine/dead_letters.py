"""Dead letters: task entries taken off their queue because they could not be processed
(delivered max_deliveries times without completing, a workflow type nobody registered, a
payload that cannot be decoded, a malformed entry). One stream per history shard
(keys.dead_letters), and one per task queue's query stream (keys.stream_dead_letters:
query requests that killed max_deliveries workers, in the query stream's own slot);
operators list, requeue or drop them (`redurable dlq`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.errors import DeadLetterNotFoundError, InvalidArgumentError
from engine.keys import Keys
from engine.library import function_name

#: A dead letter's id as operators see it: "<shard>/<stream entry id>", or for a query
#: request "queries:<task queue>/<stream entry id>".
_ID = re.compile(r"(\d+)/(\d+-\d+)")
_QUERY_ID = re.compile(r"queries:(.+)/(\d+-\d+)")
QUERY_ID_PREFIX = "queries:"


@dataclass(frozen=True)
class Where:
    """The dead-letter stream a dead letter id names: a shard's, or the query stream's
    of a task queue (shard None)."""

    shard: int | None
    task_queue: str
    key: str
    entry_id: str

    def letter_id(self, entry_id: str) -> str:
        if self.shard is None:
            return f"{QUERY_ID_PREFIX}{self.task_queue}/{entry_id}"
        return f"{self.shard}/{entry_id}"


@dataclass(frozen=True)
class DeadLetter:
    id: str
    """"<shard>/<entry id>" or "queries:<task queue>/<entry id>": what `requeue` and
    `drop` take."""
    shard: int | None
    """The history shard whose dead letters hold it; None for a query request."""
    stream: str
    """The task stream the entry came from (and goes back to on requeue)."""
    kind: str
    """"workflow", "activity" or "query" task, or "other"."""
    task_queue: str
    workflow_id: str
    run_id: str
    activity_type: str
    deliveries: int
    reason: str
    time_ms: int
    """When it was dead-lettered (the entry id's time, server clock)."""
    fields: dict[str, bytes]
    """The task entry as it was on its stream."""


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value is not None else ""


def _parse(keys: Keys, where: Where, entry_id: bytes, raw: dict[bytes, bytes]) -> DeadLetter:
    stream = _text(raw.get(b"stream"))
    if where.shard is None:
        task_queue, kind = where.task_queue, "query"
    else:
        queue_part = stream.removeprefix(keys.shard_prefix(where.shard) + "tq:")
        task_queue, _, suffix = queue_part.rpartition(":")
        kind = {"wf": "workflow", "act": "activity"}.get(suffix, "other")
    meta = {b"stream", b"message_id", b"deliveries", b"reason"}
    deliveries = _text(raw.get(b"deliveries"))
    sid = entry_id.decode()
    return DeadLetter(
        id=where.letter_id(sid),
        shard=where.shard,
        stream=stream,
        kind=kind,
        task_queue=task_queue,
        workflow_id=_text(raw.get(b"workflow_id")),
        run_id=_text(raw.get(b"run_id")),
        activity_type=_text(raw.get(b"activity_type")),
        deliveries=int(deliveries) if deliveries.isdigit() else 0,
        reason=_text(raw.get(b"reason")),
        time_ms=int(sid.split("-")[0]),
        fields={k.decode(errors="replace"): v for k, v in raw.items() if k not in meta},
    )


def _shard(keys: Keys, shard: int, entry_id: str = "") -> Where:
    return Where(shard, "", keys.dead_letters(shard), entry_id)


def _queries(keys: Keys, task_queue: str, entry_id: str = "") -> Where:
    return Where(None, task_queue, keys.stream_dead_letters(keys.queries(task_queue)), entry_id)


async def _streams(redis: Redis, keys: Keys) -> list[Where]:
    """Every dead-letter stream of the namespace: the shards', then the query streams'
    of the task queues it knows (keys.task_queues: a query goes to the queue of a
    workflow that was started, so its queue is there). Each is one key, read with
    commands of one key: on a cluster each goes to its own slot's node."""
    queues: Any = await redis.smembers(keys.task_queues())
    return [
        *(_shard(keys, shard) for shard in range(keys.shards)),
        *(_queries(keys, q) for q in sorted(q.decode(errors="replace") for q in queues)),
    ]


async def list_dead_letters(
    redis: Redis, keys: Keys, *, limit: int | None = None, newest_first: bool = False
) -> list[DeadLetter]:
    """Dead letters of every shard, then of every task queue's queries, oldest first
    within each stream (at most `limit`); with `newest_first`, the newest `limit` of all
    streams, newest first (the web UI)."""
    if newest_first:
        return await _newest(redis, keys, limit)
    out: list[DeadLetter] = []
    for where in await _streams(redis, keys):
        count = None if limit is None else limit - len(out)
        if count is not None and count <= 0:
            break
        entries: Any = await redis.xrange(where.key, count=count)
        out.extend(_parse(keys, where, sid, fields) for sid, fields in entries)
    return out


async def _newest(redis: Redis, keys: Keys, limit: int | None) -> list[DeadLetter]:
    # The newest `limit` of each stream, merged: entry ids are "<ms>-<seq>" on the
    # server clock, so they order letters across streams too (on a cluster, across
    # nodes as far as their clocks agree). The sort is stable: equal ids keep the
    # streams' order.
    out: list[DeadLetter] = []
    for where in await _streams(redis, keys):
        entries: Any = await redis.xrevrange(where.key, count=limit)
        out.extend(_parse(keys, where, sid, fields) for sid, fields in entries)
    out.sort(key=_order, reverse=True)
    return out if limit is None else out[:limit]


def _order(letter: DeadLetter) -> tuple[int, int]:
    sequence = letter.id.rpartition("-")[2]
    return letter.time_ms, int(sequence)


async def count_dead_letters(redis: Redis, keys: Keys) -> int:
    """How many dead letters the namespace holds: every shard's and every task
    queue's queries' (one XLEN each, in one pipeline: on a cluster redis-py sends each
    node its own)."""
    pipe = redis.pipeline(transaction=False)
    for where in await _streams(redis, keys):
        pipe.xlen(where.key)
    return sum(int(n) for n in await pipe.execute())


def parse_id(keys: Keys, dead_letter_id: str) -> Where:
    """The stream and entry id a dead letter id names, or a clear error."""
    text = dead_letter_id.strip()
    query = _QUERY_ID.fullmatch(text)
    if query is not None:
        return _queries(keys, query[1], query[2])
    match = _ID.fullmatch(text)
    if match is None:
        raise InvalidArgumentError(
            f"dead letter id {dead_letter_id!r} is not <shard>/<entry id> or "
            f"{QUERY_ID_PREFIX}<task queue>/<entry id> (see `dlq list`)"
        )
    shard = int(match[1])
    if shard >= keys.shards:
        raise InvalidArgumentError(
            f"dead letter id {dead_letter_id!r}: shard {shard} does not exist "
            f"(the namespace has {keys.shards})"
        )
    return _shard(keys, shard, match[2])


async def _get(redis: Redis, keys: Keys, dead_letter_id: str) -> tuple[Where, DeadLetter]:
    where = parse_id(keys, dead_letter_id)
    entries: Any = await redis.xrange(where.key, where.entry_id, where.entry_id)
    if not entries:
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
    return where, _parse(keys, where, entries[0][0], entries[0][1])


def _home(keys: Keys, where: Where, stream: str) -> bool:
    """Whether `stream` is one a dead letter of `where` may go back to: a task stream
    of its shard, or its task queue's query stream (in the same slot as its dead
    letters, as rd_dlq_requeue needs)."""
    if where.shard is None:
        return stream == keys.queries(where.task_queue)
    return stream.startswith(keys.shard_prefix(where.shard) + "tq:")


async def requeue(redis: Redis, keys: Keys, dead_letter_id: str) -> DeadLetter:
    """Put a dead letter back on its task stream (as a new entry) and remove it."""
    where, letter = await _get(redis, keys, dead_letter_id)
    if not _home(keys, where, letter.stream):
        raise InvalidArgumentError(
            f"dead letter {dead_letter_id!r} names no task stream of its own "
            f"({letter.stream!r}): drop it instead"
        )
    task_keys = [where.key, letter.stream]
    # A workflow task's run may be waiting for it (rd_dlq_requeue); its state hash is
    # named here, where the key schema lives. A workflow of another shard cannot be
    # this letter's (nor be reached from this shard's slot): its run is left alone.
    if (letter.kind == "workflow" and letter.workflow_id
            and keys.shard(letter.workflow_id) == where.shard):
        task_keys.append(keys.workflow(letter.workflow_id))
    done = await redis.fcall(function_name("rd_dlq_requeue"), len(task_keys), *task_keys,
                             where.entry_id)
    if not int(done):
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
    return letter


async def drop(redis: Redis, keys: Keys, dead_letter_id: str) -> DeadLetter:
    """Delete a dead letter for good. A workflow whose task it was stays as it is
    (terminate it if it should end)."""
    where, letter = await _get(redis, keys, dead_letter_id)
    if not await redis.xdel(where.key, where.entry_id):
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
    return letter
