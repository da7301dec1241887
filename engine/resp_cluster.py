"""Redis Cluster routing for the hot path: engine/resp.py's client, one per primary,
behind the same interface (`execute`, `execute_many`, `execute_blocking`, `close`).

Why by hand: the measured cluster clients cost 10-200 us per FCALL against resp.py's
2.6 us (docs/benchmarks.md "Cluster clients on the hot path"). Routing adds a slot
lookup per command: every engine key carries a shard's hash tag, so the slot of a key
is computed once (CRC16 in C, `binascii.crc_hqx`) and cached.

- A batch is split by node, each node's part sent on its multiplexed connection (all
  at once), and the replies put back in the batch's order. A durability wait
  (WAIT/WAITAOF, keyless) goes to every node the batch wrote before it; its reply is
  the weakest of theirs.
- MOVED: the slot's new owner is recorded, the command sent there, and the whole map
  refreshed (CLUSTER SLOTS) before the next call. ASK: ASKING + the command on the
  node named. TRYAGAIN / CLUSTERDOWN (a slot migrating, a failover): retried after a
  growing pause for up to RETRY_FOR_S, then the error reply is handed back (engine/reconnect.py
  counts both as transient). A lost connection marks the map stale: the next call
  refreshes it (a failover moved the slots to a promoted replica).
- A blocking XREADGROUP over streams of several slots (the worker's task read) would
  be CROSSSLOT: it is split into one blocking read per slot, run concurrently; the
  call returns what the first reads brought, and the reads still blocked are kept for
  the next call with the same streams (never cancelled with an entry in flight). A
  blocked read follows ASK with ASKING on its own connection, and one whose stream a
  slot migration moved away ("UNBLOCKED the stream key no longer exists") reads again
  where the slot went.
- This version of the function library is added to a primary that answers "Function
  not found" (a node added later, one whose functions were flushed, or one that has
  only other versions: the names carry the version, engine/library.py), then the call
  is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from engine.cluster_commands import (
    SLOTS,
    WAITS,
    Address,
    command_key,
    key_gone,
    missing_library,
    redirect_of,
    retry_later,
    split_read,
    streams_index,
    upper,
    without_block,
)
from engine.cluster_commands import key_slot as key_slot
from engine.cluster_commands import weakest_wait as weakest_wait
from engine.library import library_source
from engine.resp import Arg, RespPool, ServerBusyError
from engine.tls import ssl_context_from_query

#: Redirections (MOVED, ASK, "Function not found") one command follows in a row.
MAX_REDIRECTS = 8
#: How long a command answered TRYAGAIN / CLUSTERDOWN is retried: a failover, or a
#: shard's slot moving key by key (every Function call on it answers TRYAGAIN until
#: the slot has moved: engine/lua/00_common.lua `slot_moving`).
RETRY_FOR_S = 10.0
#: Pause before retrying after TRYAGAIN / CLUSTERDOWN (times the attempt number, at
#: most RETRY_PAUSE_MAX_S).
RETRY_PAUSE_S = 0.05
RETRY_PAUSE_MAX_S = 0.5
_FCALLS = frozenset({"FCALL", "FCALL_RO", b"FCALL", b"FCALL_RO"})


class ClusterRespPool(RespPool):
    """RespPool's interface over a Redis Cluster: a RespPool per primary, commands
    routed by their key's slot. (A RespPool subclass for its callers' sake: none of
    its own connection machinery is used.)"""

    def __init__(
        self,
        seeds: Sequence[Address],
        *,
        username: str | None = None,
        password: str | None = None,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(seeds[0][0], seeds[0][1], username=username, password=password,
                         ssl_context=ssl_context)
        self.seeds = list(seeds)
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self._owner: list[Address | None] = [None] * SLOTS
        self._nodes: dict[Address, RespPool] = {}
        self._stale = True
        self._refresh_lock = asyncio.Lock()
        #: Blocked per-slot reads kept for the next call: (consumer, streams) -> task.
        self._reads: dict[tuple[Any, ...], asyncio.Task[Any]] = {}
        self.commands_sent = 0
        self.round_trips = 0
        self.libraries_loaded = 0

    @classmethod
    def from_url(cls, url: str) -> ClusterRespPool:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        context = ssl_context_from_query(query) if parsed.scheme == "rediss" else None
        return cls(
            [(parsed.hostname or "localhost", parsed.port or 6379)],
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            ssl_context=context,
        )

    # --- topology ---------------------------------------------------------------------
    def node(self, address: Address) -> RespPool:
        pool = self._nodes.get(address)
        if pool is None:
            pool = RespPool(address[0], address[1], username=self.username,
                            password=self.password, ssl_context=self.ssl_context)
            pool.client_name = self.client_name
            self._nodes[address] = pool
        return pool

    @property
    def primaries(self) -> list[Address]:
        return sorted({a for a in self._owner if a is not None})

    async def refresh(self) -> None:
        """Read the slot map (CLUSTER SLOTS) from the first node that answers."""
        async with self._refresh_lock:
            candidates = [*self.primaries, *self.seeds]
            last: BaseException | None = None
            for address in dict.fromkeys(candidates):
                try:
                    reply = await self.node(address).execute("CLUSTER", "SLOTS")
                except (RedisConnectionError, OSError, ResponseError) as exc:
                    last = exc
                    continue
                owner: list[Address | None] = [None] * SLOTS
                for start, end, primary, *_ in reply:
                    host = primary[0].decode() if primary[0] else address[0]
                    if host in ("", "?"):
                        host = address[0]
                    target = (host, int(primary[1]))
                    owner[int(start) : int(end) + 1] = [target] * (int(end) - int(start) + 1)
                gone = set(self._nodes) - set(owner) - set(self.seeds)
                self._owner = owner
                self._stale = False
                for address_gone in gone:  # a node no longer serving slots
                    pool = self._nodes.pop(address_gone)
                    await pool.close()
                return
            raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {last}")

    def owner_of(self, key: Arg) -> Address:
        owner = self._owner[key_slot(key if isinstance(key, (bytes, str)) else str(key))]
        if owner is None:
            raise RedisConnectionError("the cluster serves no node for this slot (CLUSTERDOWN)")
        return owner

    def _any_node(self) -> Address:
        primaries = self.primaries
        return random.choice(primaries) if primaries else self.seeds[0]

    # --- calls ------------------------------------------------------------------------
    def _address_of(self, command: Sequence[Arg]) -> Address | None:
        """The node a command goes to; None for a durability wait (see execute_many)."""
        name = command[0]
        key: Arg | None
        if name in _FCALLS and command[2]:  # the hot path's commands, checked first
            key = command[3]
        else:
            key = command_key(command)
            if key is None:
                return None if upper(name) in WAITS else self._any_node()
        owner = self._owner[key_slot(key if isinstance(key, (bytes, str)) else str(key))]
        if owner is None:
            raise RedisConnectionError("the cluster serves no node for this slot (CLUSTERDOWN)")
        return owner

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """RespPool.execute_many across the cluster: replies in the batch's order."""
        if self._stale:
            await self.refresh()
        self.commands_sent += len(commands)
        self.round_trips += 1
        addresses = [self._address_of(command) for command in commands]
        first = addresses[0]
        if first is not None and all(a is first for a in addresses):
            replies = await self._send(first, commands)  # one node: nothing to merge
        else:
            replies = await self._split(commands, addresses)
        for i, reply in enumerate(replies):
            if isinstance(reply, ResponseError) and (
                    redirect_of(reply) or retry_later(reply) or missing_library(reply)):
                replies[i] = await self._resolve(commands[i], reply)
        return replies

    async def _split(
        self, commands: Sequence[Sequence[Arg]], addresses: list[Address | None]
    ) -> list[Any]:
        """Each node's commands sent at once; a durability wait to every node written
        before it in the batch, answered with the weakest of their replies."""
        groups: dict[Address, list[int]] = {}
        waits: dict[int, list[Any]] = {}
        written: list[Address] = []
        for i, address in enumerate(addresses):
            if address is None:
                waits[i] = []
                for target in dict.fromkeys(written) or [self._any_node()]:
                    groups.setdefault(target, []).append(i)
                continue
            written.append(address)
            groups.setdefault(address, []).append(i)
        replies: list[Any] = [None] * len(commands)
        parts = list(groups.items())
        answers = await asyncio.gather(
            *(self._send(a, [commands[i] for i in idx]) for a, idx in parts))
        for (_, idx), answer in zip(parts, answers, strict=True):
            for i, reply in zip(idx, answer, strict=True):
                if i in waits:
                    waits[i].append(reply)
                else:
                    replies[i] = reply
        for i, got in waits.items():
            replies[i] = weakest_wait(got)
        return replies

    async def _send(self, address: Address, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        try:
            return await self.node(address).execute_many(commands)
        except ServerBusyError:
            raise  # the node is there, held by a script: its slots did not move
        except (RedisConnectionError, OSError):
            self._stale = True  # a failover may have moved its slots
            raise

    async def _resolve(self, command: Sequence[Arg], reply: Any) -> Any:
        """Follow a redirection, wait out a migration or failover, or load the library
        on a node that lacks it; the command's final reply."""
        redirects = waits = 0
        deadline = asyncio.get_running_loop().time() + RETRY_FOR_S
        while redirects < MAX_REDIRECTS:
            redirect = redirect_of(reply)
            if redirect is not None:
                redirects += 1
                kind, slot, address = redirect
                if kind == "MOVED":
                    self._owner[slot] = address
                    self._stale = True  # others moved with it, most likely
                    reply = (await self._send(address, [command]))[0]
                else:
                    reply = (await self._send(address, [("ASKING",), command]))[1]
            elif retry_later(reply):
                if asyncio.get_running_loop().time() >= deadline:
                    return reply
                redirects = 0  # a slot moving answers ASK, then TRYAGAIN, in turn
                waits += 1
                await asyncio.sleep(min(RETRY_PAUSE_S * waits, RETRY_PAUSE_MAX_S))
                if str(reply).startswith("CLUSTERDOWN"):
                    self._stale = True
                    await self.refresh()
                key = command_key(command)
                address = self._any_node() if key is None else self.owner_of(key)
                reply = (await self._send(address, [command]))[0]
            elif missing_library(reply):
                redirects += 1
                key = command_key(command)
                address = self._any_node() if key is None else self.owner_of(key)
                refused = await self.load_library_on(address)
                if refused is not None:  # e.g. NOPERM (an ACL user): the admin's step
                    return ResponseError(f"{reply} (and loading it failed: {refused})")
                reply = (await self._send(address, [command]))[0]
            else:
                return reply
        return reply

    async def load_library_on(self, address: Address) -> ResponseError | None:
        """Add this version of the function library to one primary: a node added to the
        cluster after the client connected, one that lost its functions, or one that
        has only other versions (each version's functions have their own names,
        engine/library.py, so those answer "not found" for ours). Never REPLACE: the
        other versions stay for the processes that call them. The error reply when the
        node refused to load it, else None."""
        node = self.node(address)
        reply = (await node.execute_many([("FUNCTION", "LOAD", library_source())]))[0]
        if isinstance(reply, ResponseError):
            if "already exists" not in str(reply).lower():
                return reply
        else:
            self.libraries_loaded += 1
        return None

    async def execute(self, *args: Arg) -> Any:
        reply = (await self.execute_many([args]))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def execute_blocking(self, *args: Arg, asking: bool = False) -> Any:
        """A blocking command on the node of its key; an XREADGROUP over streams of
        several slots becomes one read per slot (see the module's docstring). (`asking`
        is RespPool's, for one node: the router follows ASK redirections itself.)"""
        del asking
        if self._stale:
            await self.refresh()
        if upper(args[0]) == b"XREADGROUP":
            split = split_read(args)
            if len(split) > 1:
                return await self._read_slots(args, split)
        key = command_key(args)
        address = self._any_node() if key is None else self.owner_of(key)
        return await self._blocking_on(address, args)

    async def _blocking_on(self, address: Address, args: Sequence[Arg]) -> Any:
        asking = False
        for _ in range(MAX_REDIRECTS):
            try:
                return await self.node(address).execute_blocking(*args, asking=asking)
            except ResponseError as exc:
                redirect = redirect_of(exc)
                if redirect is not None and redirect[0] == "ASK":
                    # The slot is migrating and the key has gone: the map still names
                    # the source, which would answer ASK again until the end.
                    address, asking = redirect[2], True
                    continue
                # A stream migrated away while the read blocked on it is "UNBLOCKED
                # the stream key no longer exists": read again where it went.
                if redirect is None and not retry_later(exc) and not key_gone(exc):
                    raise
                self._stale = True
                await asyncio.sleep(0 if redirect else RETRY_PAUSE_S)
                await self.refresh()
                key = command_key(args)
                address = self._any_node() if key is None else self.owner_of(key)
                asking = False
            except (RedisConnectionError, OSError):
                self._stale = True
                raise
        raise RedisConnectionError("the cluster kept redirecting a blocking command")

    async def _read_slots(self, args: Sequence[Arg], split: list[list[Arg]]) -> Any:
        """One blocking XREADGROUP per slot; what the reads that finished first brought.
        A read still blocked stays for the next call with the same streams: cancelling
        it could lose an entry the server delivers just then (pending, unseen)."""
        consumer = args[3]
        head = list(args[: streams_index(args) + 1])
        if not any((consumer, *streams) in self._reads for streams in split):
            # Nothing kept from an earlier call: first take what is there already, all
            # slots at once without BLOCK, as one XREADGROUP on a single server answers
            # at once when any stream has entries. Only when none has do blocking reads
            # start (and may be kept): a one-off read never leaves one behind that would
            # later deliver an entry to a consumer no longer reading.
            at_once = without_block(head)
            replies = await self.execute_many(
                [[*at_once, *streams, *([">"] * len(streams))] for streams in split])
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply  # as a blocking read's error reply would be
            ready = [entry for reply in replies for entry in reply or []]
            if ready:
                return ready
        tasks: list[asyncio.Task[Any]] = []
        for streams in split:
            slot_key = (consumer, *streams)
            task = self._reads.get(slot_key)
            if task is None:
                command = [*head, *streams, *([">"] * len(streams))]
                task = asyncio.ensure_future(
                    self._blocking_on(self.owner_of(streams[0]), command))
                self._reads[slot_key] = task
            tasks.append(task)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The caller is gone (the worker stops): its reads go too (resp.py shuts
            # a cancelled read's connection at once, so the server frees it).
            for slot_key, task in list(self._reads.items()):
                if task in tasks:
                    task.cancel()
                    del self._reads[slot_key]
            raise
        merged: list[Any] = []
        failure: BaseException | None = None
        for slot_key, task in list(self._reads.items()):
            if task in done:
                del self._reads[slot_key]
                if task.cancelled():
                    continue
                if task.exception() is not None:
                    failure = failure or task.exception()
                else:
                    merged.extend(task.result() or [])
        if failure is not None and not merged:
            raise failure
        return merged

    async def finish_reads(self, consumer: Arg) -> None:
        """Wait until the reads kept for `consumer` have ended (each blocks at most its
        BLOCK time): a worker that stops must not leave one blocked, to be served
        entries nobody will take, after it handed back what it was delivered."""
        kept = {k: t for k, t in self._reads.items() if k[0] == consumer}
        if kept:
            await asyncio.wait(kept.values())
        for slot_key, task in kept.items():
            self._reads.pop(slot_key, None)
            if not task.cancelled():
                task.exception()  # retrieved: a failed read is not logged as lost

    def _cancel_reads(self) -> None:
        for task in self._reads.values():
            task.cancel()
        self._reads.clear()

    async def close(self) -> None:
        self._cancel_reads()
        pools, self._nodes = list(self._nodes.values()), {}
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.close()
