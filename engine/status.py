"""Statuses of a workflow run, as the state hash's `status` field and the status indexes
(`index:status:<STATUS>`) spell them (DESIGN.md), written by the Lua library."""

from __future__ import annotations

from enum import StrEnum


class WorkflowExecutionStatus(StrEnum):
    """A StrEnum (temporalio's name), so `status == "RUNNING"` still holds and the
    member is the text Redis stores."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TERMINATED = "TERMINATED"
    TIMED_OUT = "TIMED_OUT"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"

    @classmethod
    def parse(cls, raw: bytes | str) -> WorkflowExecutionStatus:
        """The status as Redis stores it (ValueError for text that is none)."""
        return cls(raw.decode() if isinstance(raw, bytes) else raw)
