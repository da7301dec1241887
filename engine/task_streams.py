"""The task streams' delivery: consumer groups, the worker's reads, pending counts,
claiming from dead or idle consumers, and handing entries back or to the dead letters.
`Store` (engine/store.py) inherits these; they are apart because they are about task
entries, not workflow state transitions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from engine.calls import Arg, Call, FunctionCaller, TaskRef, pairs_of, text_of, unwrap
from engine.keys import GROUP, Keys
from engine.resp_cluster import ClusterRespPool


class TaskStreams(FunctionCaller):
    keys: Keys

    def dead_letters_of(self, stream: str, shard: int) -> str:
        """Where `stream`'s dead letters go: its shard's, or for a stream outside every
        shard (queries) one of its own slot (a Function call stays in one slot)."""
        if stream.startswith(self.keys.shard_prefix(shard)):
            return self.keys.dead_letters(shard)
        return self.keys.stream_dead_letters(stream)

    async def ensure_groups(self, task_queue: str, sticky: str | None = None) -> None:
        """Create the consumer groups of a task queue on every shard (idempotent), those
        of the shards' timer wake streams, and a worker's sticky streams when it gives
        its sticky name."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.keys.shards):
            for stream in (
                self.keys.workflow_tasks(shard, task_queue),
                self.keys.activity_tasks(shard, task_queue),
            ):
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        pipe.xgroup_create(self.keys.queries(task_queue), GROUP, id="0", mkstream=True)
        # Wake entries (engine/lua/00_common.lua wake_for_timers) from the group's
        # creation on ("$"): those written while no worker was there to read them are
        # old news (their timers fire at the scans of whoever takes the leases).
        for shard in range(self.keys.shards):
            pipe.xgroup_create(self.keys.timer_wake(shard), GROUP, id="$", mkstream=True)
        if sticky:
            for stream in self.sticky_streams(task_queue, sticky):
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    async def pending_counts(self, streams: Sequence[str]) -> list[int | None]:
        """How many entries each stream's consumer group has pending (XPENDING summary,
        one round trip); None where the server answered with an error."""
        if not streams:
            return []
        replies: list[Any]
        if self.fast is not None:
            replies = await self.fast.execute_many([("XPENDING", s, GROUP) for s in streams])
        else:
            pipe = self.redis.pipeline(transaction=False)
            for stream in streams:
                pipe.xpending(stream, GROUP)
            replies = list(await pipe.execute(raise_on_error=False))
        counts: list[int | None] = []
        for reply in replies:
            if isinstance(reply, Exception):
                counts.append(None)
            elif isinstance(reply, dict):  # parsed by redis-py
                counts.append(int(reply["pending"]))
            else:
                counts.append(int(reply[0]))
        return counts

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
        claimed, _ = await self.claim_stale_suspects_apart(
            stream, shard, consumer, min_idle_ms, max_deliveries, count, limit)
        return claimed

    async def claim_stale_suspects_apart(
        self,
        stream: str,
        shard: int,
        consumer: str,
        min_idle_ms: int,
        max_deliveries: int,
        count: int = 100,
        limit: int | None = None,
        max_suspects: int | None = None,
    ) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], set[bytes]]:
        """claim_stale, taking at most `max_suspects` of the entries delivered more than
        once, and those only when nothing else is claimed (the others are left pending
        where they are, as claim_from_consumer does); None: no limit. Returns the entries
        and the ids of the suspects."""
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
        suspects: set[bytes] = set()
        cursor: bytes | str = "0-0"
        while limit is None or len(claimed) < limit:
            batch = count if limit is None else min(count, limit - len(claimed))
            args: list[Arg] = [consumer, min_idle_ms, cursor, batch, max_deliveries]
            if max_suspects is not None:
                # Suspects into empty hands only (rd_claim_from's claim_suspects).
                args.append(0 if claimed else max_suspects)
            reply = await self._worker_call(
                Call("rd_claim", [stream, self.dead_letters_of(stream, shard)], args)
            )
            cursor = reply[0]
            for sid, fields in reply[1]:
                claimed.append((sid, pairs_of(fields)))
            if len(reply) > 3 and isinstance(reply[3], list) and reply[3]:
                suspects.update(reply[3])
                break  # nothing more with them: the rest at the next claim
            if text_of(cursor) == "0-0":
                break
        return claimed, suspects

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
            Call("rd_claim_from", [stream, self.dead_letters_of(stream, shard)], args)
        )
        claimed = [(sid, pairs_of(fields)) for sid, fields in reply[0]]
        suspects = set(reply[3]) if len(reply) > 3 and isinstance(reply[3], list) else set()
        return claimed, bool(int(reply[2])), suspects

    # --- sticky streams (docs/design-notes.md "Sticky workflows") -----------------------
    def sticky_streams(self, task_queue: str, sticky: str) -> list[str]:
        """A worker's own streams: its workflow tasks on every shard, then its queries."""
        return [
            *(self.keys.sticky_tasks(s, task_queue, sticky) for s in range(self.keys.shards)),
            self.keys.sticky_queries(task_queue, sticky),
        ]

    async def release_sticky(self, task_queue: str, sticky: str) -> int:
        """Delete a worker's sticky streams (it stops, or it died): the workflow tasks
        still due on them go to the shared streams. Queries waiting on it are dropped:
        their clients ask the shared stream after the owner's timeout. Returns how many
        tasks moved."""
        calls = [
            Call("rd_sticky_release", [self.keys.sticky_tasks(s, task_queue, sticky)],
                 [self.keys.shard_prefix(s), task_queue, sticky])
            for s in range(self.keys.shards)
        ]
        moved = await self.call_many(calls)
        await self.redis.delete(self.keys.sticky_queries(task_queue, sticky))
        return sum(int(unwrap(n)) for n in moved)

    def unstick_call(self, workflow_id: str, sticky: str) -> Call:
        """The worker let the workflow go from its cache: any worker takes its next task."""
        return Call("rd_unstick", [self.keys.workflow(workflow_id)], [sticky])

    def release_call(self, stream: str, msg_id: str) -> Call:
        return Call("rd_release", [stream], [msg_id], TaskRef(stream, msg_id))

    def dead_letter_call(self, stream: str, shard: int, msg_id: str, reason: str) -> Call:
        """Move a delivered entry that cannot be processed to the dead letters now."""
        return Call(
            "rd_dead_letter",
            [stream, self.dead_letters_of(stream, shard)],
            [msg_id, reason],
            TaskRef(stream, msg_id),
        )

    async def finish_reads(self, consumer: str) -> None:
        """A stopping worker's reads still blocked have ended (on a cluster a read over
        several slots keeps some blocked between calls: engine/resp_cluster.py)."""
        if isinstance(self.fast, ClusterRespPool):
            await self.fast.finish_reads(consumer)

    @property
    def reads_cut_short(self) -> bool:
        """Whether a blocking read cancelled mid-way is forgotten by the server at once
        (the lean client shuts its connection), so that a worker may block long and cut
        its reads short when it stops. Not on a cluster (engine/resp_cluster.py keeps
        reads blocked between calls, and a stopping worker waits for them to end) nor
        through redis-py."""
        return self.fast is not None and not isinstance(self.fast, ClusterRespPool)

    @property
    def reads_kept(self) -> bool:
        """Whether a blocking read's part still blocked is kept for the next read of
        the same streams (on a cluster: engine/resp_cluster.py). A worker then reads
        the same streams every time: a read of others would leave the kept one blocked,
        and an entry it takes, pending on us unseen."""
        return isinstance(self.fast, ClusterRespPool)

    async def read_group(
        self, consumer: str, streams: Sequence[str], count: int, block_ms: int
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """XREADGROUP new entries: (stream, entry id, fields) triples. The worker's task
        reads; on the fast path a blocking read has a connection of its own, shut at
        once if the read is cancelled, so the server forgets it (engine/resp.py)."""
        if self.fast is not None:
            return _entries(await self.fast.execute_blocking(
                *_xreadgroup(consumer, streams, count, block_ms)))
        reply: Any = await self.redis.xreadgroup(
            GROUP, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms)
        return [
            (stream.decode(), sid.decode(), fields)
            for stream, entries in reply or []
            for sid, fields in entries
            if fields is not None
        ]

    async def read_group_after(
        self,
        calls: Sequence[Call],
        on_replies: Callable[[list[Any]], None],
        consumer: str,
        streams: Sequence[str],
        count: int,
        block_ms: int,
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """`calls` (as call_many), then `read_group`: on the plain fast path sent
        together on the read's connection, one round trip (FunctionCaller.call_many_then).
        `on_replies` gets the calls' replies before the read answers."""
        if self.fast is None:
            on_replies(await self.call_many(calls) if calls else [])
            return await self.read_group(consumer, streams, count, block_ms)
        return _entries(await self.call_many_then(
            calls, on_replies, *_xreadgroup(consumer, streams, count, block_ms)))


def _xreadgroup(consumer: str, streams: Sequence[str], count: int, block_ms: int) -> list[Arg]:
    return ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "BLOCK", block_ms,
            "STREAMS", *streams, *([">"] * len(streams))]


def _entries(raw: Any) -> list[tuple[str, str, dict[bytes, bytes]]]:
    """An XREADGROUP reply as (stream, entry id, fields) triples (deleted entries left
    out)."""
    return [
        (stream.decode(), sid.decode(), dict(zip(flat[0::2], flat[1::2], strict=True)))
        for stream, entries in raw or []
        for sid, flat in entries
        if flat is not None
    ]
