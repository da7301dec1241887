"""The side-effect ledger: one SQLite row per activity execution start and end.

It lives in a file, outside the Redis under test, so a Redis crash cannot take the
evidence with it, and SQLite's locking lets worker processes that are killed at any
instant write to it concurrently (a kill mid-write loses that row only).

Activities record into the file named by REDURABLE_CHAOS_DB (see scripts/chaos/
workflows.py); without it they record nothing.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ENV = "REDURABLE_CHAOS_DB"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    workflow_id TEXT NOT NULL,
    activity_id INTEGER NOT NULL,
    activity_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('start', 'done')),
    pid INTEGER NOT NULL
)
"""


def _open(path: str | Path) -> sqlite3.Connection:
    # Many writer processes: wait for the lock rather than fail.
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # Only process crashes are simulated, never the machine's: the OS keeps the writes.
    db.execute("PRAGMA synchronous=OFF")
    db.execute(_SCHEMA)
    return db


def create(path: str | Path) -> Path:
    """A fresh, empty ledger file."""
    path = Path(path)
    path.unlink(missing_ok=True)
    _open(path).close()
    return path


_connection: sqlite3.Connection | None = None


def record(workflow_id: str, activity_id: int, activity_type: str, attempt: int,
           phase: str) -> None:
    """Append one row, if this process has a ledger (REDURABLE_CHAOS_DB)."""
    global _connection
    path = os.environ.get(ENV)
    if not path:
        return
    if _connection is None:
        _connection = _open(path)
    _connection.execute(
        "INSERT INTO effects VALUES (?, ?, ?, ?, ?, ?)",
        (workflow_id, activity_id, activity_type, attempt, phase, os.getpid()),
    )


@dataclass(frozen=True)
class Effects:
    """What the ledger says happened, per (workflow id, activity id)."""

    started: Counter[tuple[str, int]]
    done: Counter[tuple[str, int]]


def read(path: str | Path) -> Effects:
    db = _open(path)
    try:
        started: Counter[tuple[str, int]] = Counter()
        done: Counter[tuple[str, int]] = Counter()
        rows = db.execute(
            "SELECT workflow_id, activity_id, phase, COUNT(*) FROM effects "
            "GROUP BY workflow_id, activity_id, phase"
        )
        for wf_id, act_id, phase, count in rows:
            (started if phase == "start" else done)[(wf_id, int(act_id))] = int(count)
        return Effects(started, done)
    finally:
        db.close()
