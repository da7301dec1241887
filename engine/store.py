"""All Redis I/O of the engine: one method per transition (one FCALL each), history
reads, and the housekeeping calls of task delivery. Calls that a worker batches are
built as `Call` objects so they can share one pipeline round trip."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine import commands as cmd
from engine import events as ev
from engine.durability import Durability
from engine.errors import (
    DurabilityError,
    HistoryLimitError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from engine.keys import GROUP, Keys
from engine.resp import RespPool

log = structlog.get_logger("redurable.store")
HISTORY_VERSION = 1
Arg = bytes | str | int


@dataclass(frozen=True)
class TaskRef:
    """One entry of a task stream: what a worker holds, completes or hands back."""

    stream: str
    msg_id: str


@dataclass(frozen=True)
class Call:
    """One FCALL, ready to run alone or in a pipeline."""

    function: str
    keys: Sequence[str]
    args: Sequence[Arg]
    #: The task entry the call is about, so that a worker learns which entry a reply
    #: settles from this, never from the function's argument positions.
    task: TaskRef | None = None


@dataclass(frozen=True)
class WorkflowTaskStart:
    token: int
    now_ms: int
    attempt: int
    #: (stream entry id, event) pairs after the cursor the worker gave.
    entries: list[tuple[bytes, ev.Event]]


@dataclass(frozen=True)
class WorkflowTaskCommit:
    last_event_id: int
    last_stream_id: bytes
    closed: bool
    close_dropped: bool
    #: Activity tasks delivered to this worker with the commit: (stream, id, fields).
    eager: list[tuple[str, str, dict[bytes, bytes]]] = field(default_factory=list)


@dataclass(frozen=True)
class ActivityStart:
    state: dict[str, Any]
    input: bytes
    heartbeat_details: bytes
    now_ms: int


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_packed_event(data: bytes) -> ev.Event:
    """An event packed by the Lua `packed_event` (netstrings: id, type, ts, fields...)."""
    parts: list[bytes] = []
    pos = 0
    while pos < len(data):
        colon = data.index(b":", pos)
        size = int(data[pos:colon])
        parts.append(data[colon + 1 : colon + 1 + size])
        pos = colon + 1 + size
    fields = {b"id": parts[0], b"type": parts[1], b"ts": parts[2]}
    fields.update(zip(parts[3::2], parts[4::2], strict=True))
    return ev.decode_event(fields)


def decode_entries(raw: Sequence[Any]) -> list[tuple[bytes, ev.Event]]:
    out: list[tuple[bytes, ev.Event]] = []
    for sid, fields in raw:
        if isinstance(fields, list):  # raw RESP2 from inside a Lua reply
            fields = dict(zip(fields[0::2], fields[1::2], strict=True))
        out.append((sid, ev.decode_event(fields)))
    return out


class Store:
    """`fast`, when given, carries the hot path (transitions and task reads); without
    it (fakeredis in unit tests) everything goes through redis-py."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        fast: RespPool | None = None,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.fast = fast
        #: When set, every transition is followed by a WAITAOF/WAIT on its connection.
        self.durability = durability
        self._known_queues: set[str] = set()

    # --- plumbing ---------------------------------------------------------------------
    async def call(self, call: Call) -> Any:
        """One transition; with a durability mode, DurabilityError when it was applied
        but not confirmed durable in time."""
        if self.durability is not None:
            reply = (await self._call_batch([call], self.durability, strict=True))[0]
            if isinstance(reply, Exception):
                raise reply
            return reply
        if self.fast is not None:
            return await self.fast.execute("FCALL", call.function, len(call.keys), *call.keys,
                                           *call.args)
        return await self.redis.fcall(call.function, len(call.keys), *call.keys, *call.args)

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one pipeline round trip; an error reply comes back as the
        exception object in its slot rather than failing the others."""
        if not calls:
            return []
        if self.durability is not None:
            return await self._call_batch(calls, self.durability, strict=False)
        if self.fast is not None:
            return await self.fast.execute_many(
                [("FCALL", c.function, len(c.keys), *c.keys, *c.args) for c in calls])
        if len(calls) == 1:
            try:
                return [await self.call(calls[0])]
            except ResponseError as exc:
                return [exc]
        pipe = self.redis.pipeline(transaction=False)
        for c in calls:
            pipe.fcall(c.function, len(c.keys), *c.keys, *c.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _call_batch(
        self, calls: Sequence[Call], durability: Durability, *, strict: bool
    ) -> list[Any]:
        """Calls, then the durability wait on the same connection (it covers every
        earlier write of that connection). When the wait falls short and `strict`, each
        reply slot holds the DurabilityError (the writes happened, their durability is
        unknown: a client must hear it). Workers pass strict=False and go on: a
        transition lost in a crash loses its XACK with it, so its task runs again."""
        commands: list[tuple[Any, ...]] = [
            ("FCALL", c.function, len(c.keys), *c.keys, *c.args) for c in calls
        ]
        commands.append(durability.command())
        if self.fast is not None:
            replies = await self.fast.execute_many(commands)
        else:
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies = list(await pipe.execute(raise_on_error=False))
        try:
            durability.check(replies[-1])
        except DurabilityError as exc:
            if strict:
                return [r if isinstance(r, Exception) else exc for r in replies[:-1]]
            log.warning("durability_not_confirmed", error=str(exc))
        return list(replies[:-1])

    async def _worker_call(self, call: Call) -> Any:
        """One call of a worker's own: like `call`, but a durability wait that falls
        short is logged, not raised (as in call_many: see _call_batch)."""
        reply = (await self.call_many([call]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _wf_keys(self, workflow_id: str) -> list[str]:
        k = self.keys
        return [k.workflow(workflow_id), k.history(workflow_id), k.buffer(workflow_id)]

    def _prefix(self, workflow_id: str) -> str:
        return self.keys.shard_prefix(self.keys.shard(workflow_id))

    async def ensure_groups(self, task_queue: str) -> None:
        """Create the consumer groups of a task queue on every shard (idempotent)."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            for stream in (
                self.keys.workflow_tasks(shard, task_queue),
                self.keys.activity_tasks(shard, task_queue),
            ):
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        pipe.xgroup_create(self.keys.queries(task_queue), GROUP, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    # --- client transitions -----------------------------------------------------------
    async def start(
        self, workflow_id: str, run_id: str, workflow_type: str, task_queue: str, payload: bytes
    ) -> str:
        reply = await self.call(
            Call(
                "rd_start",
                self._wf_keys(workflow_id),
                [
                    self._prefix(workflow_id),
                    workflow_id,
                    run_id,
                    workflow_type,
                    task_queue,
                    payload,
                    HISTORY_VERSION,
                ],
            )
        )
        if _s(reply[0]) == "already_started":
            raise WorkflowAlreadyStartedError(workflow_id, _s(reply[1]))
        if task_queue not in self._known_queues:  # the registry of queues, once per queue
            self._known_queues.add(task_queue)
            await self.redis.sadd(self.keys.task_queues(), task_queue)
        return _s(reply[1])

    async def _to_running(self, function: str, workflow_id: str, run_id: str, *args: Arg) -> None:
        reply = await self.call(
            Call(
                function,
                self._wf_keys(workflow_id),
                [self._prefix(workflow_id), workflow_id, run_id, *args],
            )
        )
        status = _s(reply[0])
        if status == "not_found":
            raise WorkflowNotFoundError(workflow_id)
        if status == "not_running":
            raise WorkflowNotRunningError(workflow_id, _s(reply[1]))
        if status == "history_limit":
            raise HistoryLimitError(f"workflow {workflow_id!r}: {_s(reply[1])}")

    async def signal(self, workflow_id: str, run_id: str, name: str, payload: bytes) -> None:
        await self._to_running("rd_signal", workflow_id, run_id, name, payload)

    async def cancel(self, workflow_id: str, run_id: str, reason: str) -> None:
        await self._to_running("rd_cancel", workflow_id, run_id, reason)

    async def terminate(self, workflow_id: str, run_id: str, reason: str) -> None:
        await self._to_running("rd_terminate", workflow_id, run_id, reason)

    # --- workflow tasks ---------------------------------------------------------------
    def _task_keys(self, workflow_id: str, stream: str) -> list[str]:
        return [*self._wf_keys(workflow_id), stream]

    def wft_start_call(
        self,
        workflow_id: str,
        run_id: str,
        epoch: str,
        msg_id: str,
        stream: str,
        after_stream_id: bytes | None,
        timeout_ms: int,
    ) -> Call:
        return Call(
            "rd_wft_start",
            self._task_keys(workflow_id, stream),
            [
                self._prefix(workflow_id),
                workflow_id,
                run_id,
                epoch,
                msg_id,
                after_stream_id or b"",
                timeout_ms,
            ],
            TaskRef(stream, msg_id),
        )

    @staticmethod
    def parse_wft_start(reply: Any) -> WorkflowTaskStart | None:
        if isinstance(reply, Exception):
            raise reply
        if _s(reply[0]) != "ok":
            return None
        return WorkflowTaskStart(
            token=int(reply[1]),
            now_ms=int(reply[2]),
            attempt=int(reply[3]),
            entries=decode_entries(reply[4]),
        )

    def wft_complete_call(
        self,
        workflow_id: str,
        run_id: str,
        epoch: str,
        token: int | None,
        msg_id: str,
        stream: str,
        worker: str,
        now_ms: int,
        flags: str,
        commands: Sequence[cmd.Command],
        seen_next_event_id: int = 0,
        eager_slots: int = 0,
    ) -> Call:
        """`token=None` is a speculative completion (no rd_wft_start): it lands only if
        the history's next event id is still `seen_next_event_id`."""
        args: list[Arg] = [
            self._prefix(workflow_id),
            workflow_id,
            run_id,
            epoch,
            "" if token is None else token,
            msg_id,
            worker,
            now_ms,
            flags,
            seen_next_event_id,
            eager_slots,
        ]
        for command in commands:
            event_type, attrs = cmd.to_event(command)
            fields = ev.encode_attributes(event_type, attrs)
            args += [event_type.__name__, len(fields) // 2, *fields]
        return Call(
            "rd_wft_complete", self._task_keys(workflow_id, stream), args, TaskRef(stream, msg_id)
        )

    @staticmethod
    def parse_wft_complete(reply: Any) -> WorkflowTaskCommit | str:
        """The commit, or "stale" (dropped) / "retry" (speculation failed: start it)."""
        if isinstance(reply, Exception):
            raise reply
        if _s(reply[0]) != "ok":
            return _s(reply[0])
        return WorkflowTaskCommit(
            last_event_id=int(reply[1]),
            last_stream_id=bytes(reply[2]),
            closed=bool(int(reply[3])),
            close_dropped=bool(int(reply[4])),
            eager=[
                (_s(stream), _s(sid), dict(zip(flat[0::2], flat[1::2], strict=True)))
                for stream, sid, flat in (reply[5] if len(reply) > 5 else [])
            ],
        )

    def wft_fail_call(
        self,
        workflow_id: str,
        run_id: str,
        epoch: str,
        token: int,
        msg_id: str,
        stream: str,
        failure: dict[str, Any],
        dead_letter_reason: str | None = None,
    ) -> Call:
        """With a reason, the task goes to the dead letters instead of being retried."""
        keys = self._task_keys(workflow_id, stream)
        args: list[Arg] = [
            self._prefix(workflow_id),
            workflow_id,
            run_id,
            epoch,
            token,
            msg_id,
            json.dumps(failure, separators=(",", ":")),
        ]
        if dead_letter_reason:
            keys.append(self.keys.dead_letters(self.keys.shard(workflow_id)))
            args.append(dead_letter_reason)
        return Call("rd_wft_fail", keys, args, TaskRef(stream, msg_id))

    # --- activity tasks ---------------------------------------------------------------
    def act_start_call(
        self,
        workflow_id: str,
        run_id: str,
        activity_id: str,
        attempt: str,
        msg_id: str,
        stream: str,
        worker: str,
    ) -> Call:
        return Call(
            "rd_act_start",
            self._task_keys(workflow_id, stream),
            [self._prefix(workflow_id), workflow_id, run_id, activity_id, attempt, msg_id, worker],
            TaskRef(stream, msg_id),
        )

    @staticmethod
    def parse_act_start(reply: Any) -> ActivityStart | None:
        if isinstance(reply, Exception):
            raise reply
        if _s(reply[0]) != "ok":
            return None
        return ActivityStart(
            state=json.loads(reply[1]),
            input=bytes(reply[2]),
            heartbeat_details=bytes(reply[3]),
            now_ms=int(reply[4]),
        )

    def act_complete_call(
        self,
        workflow_id: str,
        run_id: str,
        activity_id: str,
        attempt: str,
        msg_id: str,
        stream: str,
        *,
        result: bytes | None = None,
        failure: dict[str, Any] | None = None,
        eager_consumer: str = "",
        eager_task_queue: str = "",
    ) -> Call:
        """`eager_consumer`: a worker polling `eager_task_queue`'s workflow tasks, to be
        handed the workflow task this completion queues (see parse_eager_wft)."""
        base: list[Arg] = [
            self._prefix(workflow_id),
            workflow_id,
            run_id,
            activity_id,
            attempt,
            msg_id,
        ]
        if failure is None:
            assert result is not None
            tail: list[Arg] = ["completed", result, "", "0"]
        else:
            tail = [
                "failed",
                json.dumps(failure, separators=(",", ":")),
                str(failure.get("type", "")),
                "1" if failure.get("non_retryable") else "0",
            ]
        if eager_consumer:
            tail += [eager_consumer, eager_task_queue]
        return Call(
            "rd_act_complete",
            self._task_keys(workflow_id, stream),
            base + tail,
            TaskRef(stream, msg_id),
        )

    @staticmethod
    def parse_eager_wft(reply: Any) -> tuple[str, str, dict[bytes, bytes]] | None:
        """The workflow task an activity completion handed over: (stream, id, fields)."""
        if not isinstance(reply, list) or len(reply) < 3 or not reply[2]:
            return None
        stream, sid, fields = reply[2]
        return _s(stream), _s(sid), dict(zip(fields[0::2], fields[1::2], strict=True))

    def act_heartbeat_call(
        self, workflow_id: str, run_id: str, activity_id: str, attempt: str, details: bytes
    ) -> Call:
        return Call(
            "rd_act_heartbeat",
            [self.keys.workflow(workflow_id)],
            [self._prefix(workflow_id), workflow_id, run_id, activity_id, attempt, details],
        )

    # --- timers and delivery housekeeping ----------------------------------------------
    async def fire_timers(self, limit: int = 200) -> int:
        """Fire due timers on every shard (one pipeline); returns how many fired."""
        calls = [
            Call("rd_fire_timers", [self.keys.timers(s)], [self.keys.shard_prefix(s), limit])
            for s in range(self.keys.shards)
        ]
        fired = 0
        for reply in await self.call_many(calls):
            if isinstance(reply, Exception):
                raise reply
            fired += int(reply[0])
        return fired

    async def claim_stale(
        self,
        stream: str,
        shard: int,
        consumer: str,
        min_idle_ms: int,
        max_deliveries: int,
        count: int = 100,
        limit: int | None = None,
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Claim every entry of `stream` idle longer than `min_idle_ms` (at most about
        `limit`), following the XAUTOCLAIM cursor to the end; over-delivered entries go
        to the dead letters."""
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
        cursor: bytes | str = "0-0"
        while limit is None or len(claimed) < limit:
            batch = count if limit is None else min(count, limit - len(claimed))
            reply = await self._worker_call(
                Call(
                    "rd_claim",
                    [stream, self.keys.dead_letters(shard)],
                    [consumer, min_idle_ms, cursor, batch, max_deliveries],
                )
            )
            cursor = reply[0]
            for sid, fields in reply[1]:
                claimed.append((sid, dict(zip(fields[0::2], fields[1::2], strict=True))))
            if _s(cursor) == "0-0":
                break
        return claimed

    async def claim_from_consumer(
        self,
        stream: str,
        shard: int,
        dead_consumer: str,
        consumer: str,
        max_deliveries: int,
        limit: int = 100,
        max_suspects: int | None = None,
    ) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], bool, set[bytes]]:
        """Take over up to `limit` pending entries of a consumer known to be dead, and
        at most `max_suspects` of those delivered more than once (default: no limit).
        Returns the entries, whether it may hold more, and the ids of the suspects."""
        args: list[Arg] = [dead_consumer, consumer, limit, max_deliveries]
        if max_suspects is not None:
            args.append(max_suspects)
        reply = await self._worker_call(
            Call("rd_claim_from", [stream, self.keys.dead_letters(shard)], args)
        )
        claimed = [
            (sid, dict(zip(fields[0::2], fields[1::2], strict=True))) for sid, fields in reply[0]
        ]
        suspects = set(reply[3]) if len(reply) > 3 and isinstance(reply[3], list) else set()
        return claimed, bool(int(reply[2])), suspects

    def release_call(self, stream: str, msg_id: str) -> Call:
        return Call("rd_release", [stream], [msg_id], TaskRef(stream, msg_id))

    def dead_letter_call(self, stream: str, shard: int, msg_id: str, reason: str) -> Call:
        """Move a delivered entry that cannot be processed to the dead letters now."""
        return Call(
            "rd_dead_letter",
            [stream, self.keys.dead_letters(shard)],
            [msg_id, reason],
            TaskRef(stream, msg_id),
        )

    async def read_group(
        self, consumer: str, streams: Sequence[str], count: int, block_ms: int
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """XREADGROUP new entries: (stream, entry id, fields) triples. The worker's task
        reads; on the fast path a blocking read has a connection of its own, shut at
        once if the read is cancelled, so the server forgets it (engine/resp.py)."""
        if self.fast is not None:
            raw: Any = await self.fast.execute_blocking(
                "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "BLOCK", block_ms,
                "STREAMS", *streams, *([">"] * len(streams)))
            return [
                (stream.decode(), sid.decode(), dict(zip(flat[0::2], flat[1::2], strict=True)))
                for stream, entries in raw or []
                for sid, flat in entries
                if flat is not None
            ]
        reply: Any = await self.redis.xreadgroup(
            GROUP, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms)
        return [
            (stream.decode(), sid.decode(), fields)
            for stream, entries in reply or []
            for sid, fields in entries
            if fields is not None
        ]

    # --- reads ------------------------------------------------------------------------
    async def read_history(
        self, workflow_id: str, after: bytes | None = None, count: int | None = None
    ) -> list[tuple[bytes, ev.Event]]:
        start = b"(" + after if after else "-"
        raw: Any = await self.redis.xrange(self.keys.history(workflow_id), start, "+", count=count)
        return decode_entries(raw)

    async def get_fields(self, workflow_id: str, *fields: str) -> list[bytes | None]:
        """HMGET on the workflow hash (hot path: result() checks)."""
        key = self.keys.workflow(workflow_id)
        if self.fast is not None:
            row: Any = await self.fast.execute("HMGET", key, *fields)
        else:
            row = await self.redis.hmget(key, list(fields))
        return list(row)

    async def get_state(self, workflow_id: str) -> dict[str, bytes]:
        raw: dict[Any, Any] = await self.redis.hgetall(self.keys.workflow(workflow_id))
        return {_s(k): bytes(v) for k, v in raw.items()}
