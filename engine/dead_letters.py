"""Dead letters: task entries taken off their queue because they could not be processed
(delivered max_deliveries times without completing, a workflow type nobody registered, a
payload that cannot be decoded, a malformed entry). One stream per history shard
(keys.dead_letters); operators list, requeue or drop them (`redurable dlq`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.errors import DeadLetterNotFoundError, InvalidArgumentError
from engine.keys import Keys
from engine.library import function_name

#: A dead letter's id as operators see it: "<shard>/<stream entry id>".
_ID = re.compile(r"(\d+)/(\d+-\d+)")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    """"<shard>/<entry id>": what `requeue` and `drop` take."""
    shard: int
    stream: str
    """The task stream the entry came from (and goes back to on requeue)."""
    kind: str
    """"workflow" or "activity" task, or "other"."""
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


def _parse(keys: Keys, shard: int, entry_id: bytes, raw: dict[bytes, bytes]) -> DeadLetter:
    stream = _text(raw.get(b"stream"))
    queue_part = stream.removeprefix(keys.shard_prefix(shard) + "tq:")
    task_queue, _, suffix = queue_part.rpartition(":")
    kind = {"wf": "workflow", "act": "activity"}.get(suffix, "other")
    meta = {b"stream", b"message_id", b"deliveries", b"reason"}
    deliveries = _text(raw.get(b"deliveries"))
    sid = entry_id.decode()
    return DeadLetter(
        id=f"{shard}/{sid}",
        shard=shard,
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


async def list_dead_letters(
    redis: Redis, keys: Keys, *, limit: int | None = None, newest_first: bool = False
) -> list[DeadLetter]:
    """Dead letters of every shard, oldest first within a shard (at most `limit`); with
    `newest_first`, the newest `limit` of all shards, newest first (the web UI)."""
    if newest_first:
        return await _newest(redis, keys, limit)
    out: list[DeadLetter] = []
    for shard in range(keys.shards):
        count = None if limit is None else limit - len(out)
        if count is not None and count <= 0:
            break
        entries: Any = await redis.xrange(keys.dead_letters(shard), count=count)
        out.extend(_parse(keys, shard, sid, fields) for sid, fields in entries)
    return out


async def _newest(redis: Redis, keys: Keys, limit: int | None) -> list[DeadLetter]:
    # The newest `limit` of each shard, merged: entry ids are "<ms>-<seq>" on the server
    # clock, so they order letters across shards too.
    out: list[DeadLetter] = []
    for shard in range(keys.shards):
        entries: Any = await redis.xrevrange(keys.dead_letters(shard), count=limit)
        out.extend(_parse(keys, shard, sid, fields) for sid, fields in entries)
    out.sort(key=_order, reverse=True)
    return out if limit is None else out[:limit]


def _order(letter: DeadLetter) -> tuple[int, int, int]:
    sequence = letter.id.rpartition("-")[2]
    return letter.time_ms, int(sequence), -letter.shard


async def count_dead_letters(redis: Redis, keys: Keys) -> int:
    """How many dead letters every shard holds."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.shards):
        pipe.xlen(keys.dead_letters(shard))
    return sum(int(n) for n in await pipe.execute())


def parse_id(keys: Keys, dead_letter_id: str) -> tuple[int, str]:
    """(shard, entry id) of a dead letter id, or a clear error."""
    match = _ID.fullmatch(dead_letter_id.strip())
    if match is None:
        raise InvalidArgumentError(
            f"dead letter id {dead_letter_id!r} is not <shard>/<entry id> (see `dlq list`)"
        )
    shard = int(match[1])
    if shard >= keys.shards:
        raise InvalidArgumentError(
            f"dead letter id {dead_letter_id!r}: shard {shard} does not exist "
            f"(the namespace has {keys.shards})"
        )
    return shard, match[2]


async def _get(redis: Redis, keys: Keys, dead_letter_id: str) -> DeadLetter:
    shard, sid = parse_id(keys, dead_letter_id)
    entries: Any = await redis.xrange(keys.dead_letters(shard), sid, sid)
    if not entries:
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
    return _parse(keys, shard, entries[0][0], entries[0][1])


async def requeue(redis: Redis, keys: Keys, dead_letter_id: str) -> DeadLetter:
    """Put a dead letter back on its task stream (as a new entry) and remove it."""
    letter = await _get(redis, keys, dead_letter_id)
    if not letter.stream.startswith(keys.shard_prefix(letter.shard) + "tq:"):
        raise InvalidArgumentError(
            f"dead letter {dead_letter_id!r} names no task stream of its shard "
            f"({letter.stream!r}): drop it instead"
        )
    shard, sid = parse_id(keys, dead_letter_id)
    task_keys = [keys.dead_letters(shard), letter.stream]
    # A workflow task's run may be waiting for it (rd_dlq_requeue); its state hash is
    # named here, where the key schema lives. A workflow of another shard cannot be
    # this letter's (nor be reached from this shard's slot): its run is left alone.
    if (letter.kind == "workflow" and letter.workflow_id
            and keys.shard(letter.workflow_id) == shard):
        task_keys.append(keys.workflow(letter.workflow_id))
    done = await redis.fcall(function_name("rd_dlq_requeue"), len(task_keys), *task_keys, sid)
    if not int(done):
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
    return letter


async def drop(redis: Redis, keys: Keys, dead_letter_id: str) -> DeadLetter:
    """Delete a dead letter for good. A workflow whose task it was stays as it is
    (terminate it if it should end)."""
    letter = await _get(redis, keys, dead_letter_id)
    shard, sid = parse_id(keys, dead_letter_id)
    if not await redis.xdel(keys.dead_letters(shard), sid):
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id!r}")
    return letter

