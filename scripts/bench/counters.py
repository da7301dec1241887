"""Client-side counters, below any Redis client library: every write to an asyncio
stream is one network round trip (one command, or a whole pipeline), and the commands
in it are counted from the RESP it carries. Works for redis-py and for any client on
asyncio streams, so it keeps measuring when the engine changes its client."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any

COUNTS: Counter[str] = Counter()
_installed = False


def _count(data: bytes) -> None:
    """Commands start with an array header ("*N" at the start of the buffer or after a
    CRLF); an argument that is exactly "*" (XADD's id) is the one look-alike. Two
    bytes.count calls, not a regex: this runs inside the process being measured."""
    COUNTS["round_trips"] += 1
    n = data.count(b"\r\n*") - data.count(b"\r\n*\r\n")
    COUNTS["commands"] += n + (data[:1] == b"*")
    # Timer scans (any library version's rd_fire_timers): what a timer loop wake costs.
    COUNTS["timer_scans"] += data.count(b"rd_fire_timers")


def install() -> None:
    """Patch asyncio.StreamWriter to count (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    write = asyncio.StreamWriter.write
    writelines = asyncio.StreamWriter.writelines

    def counting_write(self: asyncio.StreamWriter, data: Any) -> None:
        _count(data if isinstance(data, bytes) else bytes(data))
        write(self, data)

    def counting_writelines(self: asyncio.StreamWriter, data: Iterable[Any]) -> None:
        chunks = [bytes(d) for d in data]
        _count(b"".join(chunks))
        writelines(self, chunks)

    asyncio.StreamWriter.write = counting_write  # type: ignore[method-assign]
    asyncio.StreamWriter.writelines = counting_writelines  # type: ignore[method-assign]


def snapshot() -> dict[str, int]:
    return dict(COUNTS)
