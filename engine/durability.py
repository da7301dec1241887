"""Durability modes: what a transition waits for before the caller hears it is done.

A Redis write is acknowledged once it is in the server's memory. Whether it survives a
crash of the server depends on its AOF setting (`appendfsync always` writes it to disk
before the reply; `everysec` up to a second later) and on replicas. A client that must
know a transition is on disk, or on replicas, before it goes on asks for it with
`WAITAOF` / `WAIT`, sent on the same connection right after the transition's Function
call (both wait for every earlier write of their connection).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.errors import DurabilityError, InvalidArgumentError

Arg = str | bytes | int | float

_SPEC = re.compile(
    r"^(?:(?P<fsync>fsync)(?:\+replicas:(?P<fsynced>\d+))?|replicas:(?P<acked>\d+))$"
)


@dataclass(frozen=True)
class Durability:
    """Wait after every transition until it is durable in the way asked for."""

    #: The server's own AOF has fsynced it (WAITAOF; needs `appendonly yes`).
    local_fsync: bool = False
    #: This many replicas have it in memory (WAIT) ...
    replicas: int = 0
    #: ... or, with local_fsync, have fsynced it to their own AOF (WAITAOF).
    replicas_fsync: bool = False
    #: How long to wait; a transition not durable by then raises DurabilityError
    #: (it was applied: the error says it is not confirmed durable).
    timeout_ms: int = 5000

    def __post_init__(self) -> None:
        if self.timeout_ms < 1:  # WAIT/WAITAOF take 0 for "block for ever"
            raise InvalidArgumentError("durability timeout_ms must be at least 1")

    @classmethod
    def parse(cls, spec: str | Durability | None, timeout_ms: int = 5000) -> Durability | None:
        """`None`/"none" (the server's own setting), "fsync" (local AOF fsync),
        "replicas:N" (N replicas acknowledged), "fsync+replicas:N" (fsynced locally and
        on N replicas)."""
        if spec is None or isinstance(spec, Durability):
            return spec
        text = spec.strip().lower()
        if text in ("", "none"):
            return None
        match = _SPEC.match(text)
        if match is None:
            raise InvalidArgumentError(
                f"durability {spec!r} is not one of: none, fsync, replicas:N, fsync+replicas:N"
            )
        if match["acked"] is not None:
            count = int(match["acked"])
            if count < 1:
                raise InvalidArgumentError("durability replicas:N needs N >= 1")
            return cls(replicas=count, timeout_ms=timeout_ms)
        fsynced = int(match["fsynced"] or 0)
        return cls(
            local_fsync=True,
            replicas=fsynced,
            replicas_fsync=fsynced > 0,
            timeout_ms=timeout_ms,
        )

    def __str__(self) -> str:
        if self.local_fsync:
            return "fsync" + (f"+replicas:{self.replicas}" if self.replicas else "")
        return f"replicas:{self.replicas}"

    def command(self) -> tuple[Arg, ...]:
        """The command to send after the transition, on the same connection."""
        if self.local_fsync:
            return ("WAITAOF", 1, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, reply: Any) -> None:
        """Raise DurabilityError unless the wait's reply shows what was asked for."""
        if isinstance(reply, Exception):
            raise DurabilityError(f"durability {self} could not be confirmed: {reply}")
        if self.local_fsync:  # WAITAOF: [local fsyncs, replicas that fsynced]
            local, replicas = int(reply[0]), int(reply[1])
        else:  # WAIT: replicas that acknowledged
            local, replicas = 1, int(reply)
        if local < 1 or replicas < self.replicas:
            raise DurabilityError(
                f"transition applied but not confirmed durable ({self}) within "
                f"{self.timeout_ms} ms: local fsync {local}/{int(self.local_fsync)}, "
                f"replicas {replicas}/{self.replicas}"
            )

    def unsupported_reason(self, error: str) -> str:
        """A clear explanation of the server's refusal of the probe at connect."""
        lowered = error.lower()
        if "unknown command" in lowered:
            return (
                f"durability {self} needs WAITAOF, which this server lacks "
                "(Redis 7.2+ or Valkey 8+); use durability='replicas:N' or appendfsync always"
            )
        if "appendonly" in lowered:
            return f"durability {self} needs the server to run with `appendonly yes`"
        return f"durability {self} is not available on this server: {error}"
