"""Redis Cluster commands and replies, as pure functions (engine/resp_cluster.py routes
with them): a key's hash slot, the key that decides where a command goes, what a
redirection or a "retry later" reply says, a durability wait's reply merged over nodes,
and an XREADGROUP's streams grouped by slot."""

from __future__ import annotations

import functools
from binascii import crc_hqx
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from engine.resp import Arg

SLOTS = 16384
Address = tuple[str, int]
WAITS = (b"WAIT", b"WAITAOF")


@functools.lru_cache(maxsize=65536)
def key_slot(key: bytes | str) -> int:
    """The hash slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc_hqx(raw, 0) % SLOTS


def upper(arg: Arg) -> bytes:
    return (arg.encode() if isinstance(arg, str) else bytes(arg) if isinstance(arg, bytes)
            else str(arg).encode()).upper()


def command_key(command: Sequence[Arg]) -> Arg | None:
    """The key that decides where a command goes; None for a keyless command."""
    name = upper(command[0])
    if name in (b"FCALL", b"FCALL_RO", b"EVAL", b"EVALSHA"):
        return command[3] if int(command[2]) > 0 else None
    if name in (b"XREADGROUP", b"XREAD"):
        for i, arg in enumerate(command):
            if upper(arg) == b"STREAMS":
                return command[i + 1]
        return None
    if name == b"PUBSUB" or name in WAITS or len(command) < 2:
        # PUBSUB SHARDNUMSUB <channel>: the channel's slot; other PUBSUB: any node.
        if name == b"PUBSUB" and len(command) > 2 and upper(command[1]) == b"SHARDNUMSUB":
            return command[2]
        return None
    if name in (b"PING", b"TIME", b"ROLE", b"INFO", b"FUNCTION", b"CLUSTER", b"DBSIZE"):
        return None
    return command[1]


def redirect_of(reply: Any) -> tuple[str, int, Address] | None:
    """("MOVED"|"ASK", slot, address) of a redirection error reply, else None."""
    if not isinstance(reply, ResponseError):
        return None
    parts = str(reply).split()
    if len(parts) == 3 and parts[0] in ("MOVED", "ASK"):
        host, _, port = parts[2].rpartition(":")
        return parts[0], int(parts[1]), (host, int(port))
    return None


def retry_later(reply: Any) -> bool:
    return isinstance(reply, ResponseError) and str(reply).startswith(("TRYAGAIN", "CLUSTERDOWN"))


def key_gone(reply: Any) -> bool:
    """A blocked read's stream was deleted under it: by MIGRATE, when its slot moved."""
    return isinstance(reply, ResponseError) and str(reply).startswith("UNBLOCKED")


def missing_library(reply: Any) -> bool:
    return isinstance(reply, ResponseError) and "function not found" in str(reply).lower()


def weakest_wait(replies: Sequence[Any]) -> Any:
    """One durability wait's reply from several nodes': the least any node confirmed."""
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    if all(isinstance(r, list) for r in replies):  # WAITAOF: [local, replicas]
        return [min(int(r[0]) for r in replies), min(int(r[1]) for r in replies)]
    return min(int(r) for r in replies)



def without_block(head: Sequence[Arg]) -> list[Arg]:
    """An XREADGROUP's arguments before its streams, without BLOCK and its time."""
    out: list[Arg] = []
    skip = False
    for arg in head:
        if skip:
            skip = False
            continue
        if upper(arg) == b"BLOCK":
            skip = True
            continue
        out.append(arg)
    return out


def streams_index(args: Sequence[Arg]) -> int:
    for i, arg in enumerate(args):
        if upper(arg) == b"STREAMS":
            return i
    raise ValueError("XREADGROUP without STREAMS")


def split_read(args: Sequence[Arg]) -> list[list[Arg]]:
    """The streams of an XREADGROUP ... STREAMS s1 s2 > > grouped by slot, in order."""
    index = streams_index(args)
    names = list(args[index + 1 :])
    streams = names[: len(names) // 2]
    by_slot: dict[int, list[Arg]] = {}
    for stream in streams:
        by_slot.setdefault(key_slot(stream if isinstance(stream, (bytes, str))
                                    else str(stream)), []).append(stream)
    return list(by_slot.values())
