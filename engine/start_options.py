"""Options of a workflow start beyond its id and queue (temporalio's names): id reuse
and conflict policies, timeouts, and signal-with-start. `StartOptions.to_json()` is the
options argument of `rd_start` (engine/lua/10_client.lua), which applies them in the
same call that starts the run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from engine.errors import InvalidArgumentError


class WorkflowIDReusePolicy(Enum):
    """What a start does when a *closed* run with the same workflow id exists."""

    #: Start a new run (the default).
    ALLOW_DUPLICATE = "ALLOW_DUPLICATE"
    #: Start a new run only if the last one did not complete: FAILED, CANCELED,
    #: TERMINATED or TIMED_OUT (else WorkflowAlreadyStartedError).
    ALLOW_DUPLICATE_FAILED_ONLY = "ALLOW_DUPLICATE_FAILED_ONLY"
    #: Never start again under this id (WorkflowAlreadyStartedError).
    REJECT_DUPLICATE = "REJECT_DUPLICATE"
    #: As ALLOW_DUPLICATE, and a running run is terminated first (deprecated in
    #: Temporal in favour of WorkflowIDConflictPolicy.TERMINATE_EXISTING).
    TERMINATE_IF_RUNNING = "TERMINATE_IF_RUNNING"


class WorkflowIDConflictPolicy(Enum):
    """What a start does when a run with the same workflow id is *running*."""

    #: WorkflowAlreadyStartedError (the default of a plain start).
    FAIL = "FAIL"
    #: Return a handle to the running run (the default of signal-with-start).
    USE_EXISTING = "USE_EXISTING"
    #: Terminate the running run, then start a new one.
    TERMINATE_EXISTING = "TERMINATE_EXISTING"


def duration_ms(value: timedelta | float | None, what: str) -> int:
    """A timeout given as a timedelta or seconds, in whole ms (0: none)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise InvalidArgumentError(f"{what} must be a timedelta or seconds, not {value!r}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgumentError(f"{what} must be positive, not {value!r}")
    return max(1, round(seconds * 1000))


@dataclass(frozen=True)
class StartOptions:
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE
    id_conflict_policy: WorkflowIDConflictPolicy | None = None
    execution_timeout_ms: int = 0
    run_timeout_ms: int = 0
    task_timeout_ms: int = 0
    #: Signal-with-start: the signal's name ("" none).
    start_signal: str = ""
    #: Headers of the start as JSON text ("" none), recorded on WorkflowExecutionStarted.
    header: str = ""
    #: Run chains (engine/run_chain.py): how long closed runs of the chain are kept
    #: (None: the engine's default), the cron schedule ("" none, checked by
    #: engine/cron.py) and how long the first workflow task waits (its first cron time).
    run_retention_ms: int | None = None
    cron_schedule: str = ""
    first_task_backoff_ms: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id_reuse_policy, WorkflowIDReusePolicy):
            raise InvalidArgumentError(
                f"id_reuse_policy must be a WorkflowIDReusePolicy, not {self.id_reuse_policy!r}"
            )
        conflict = self.id_conflict_policy
        if conflict is not None and not isinstance(conflict, WorkflowIDConflictPolicy):
            raise InvalidArgumentError(
                f"id_conflict_policy must be a WorkflowIDConflictPolicy, not {conflict!r}"
            )
        if self.start_signal and conflict is WorkflowIDConflictPolicy.FAIL:
            raise InvalidArgumentError(
                "signal-with-start signals a running workflow: id_conflict_policy FAIL "
                "does not apply (use USE_EXISTING or TERMINATE_EXISTING)"
            )
        if (self.id_reuse_policy is WorkflowIDReusePolicy.TERMINATE_IF_RUNNING
                and conflict is not None):
            raise InvalidArgumentError(
                "id_reuse_policy TERMINATE_IF_RUNNING and an id_conflict_policy do not go "
                "together: use id_conflict_policy=TERMINATE_EXISTING alone"
            )

    def conflict(self) -> WorkflowIDConflictPolicy:
        """The policy that applies: signal-with-start uses the running run by default."""
        if self.id_conflict_policy is not None:
            return self.id_conflict_policy
        if self.start_signal:
            return WorkflowIDConflictPolicy.USE_EXISTING
        return WorkflowIDConflictPolicy.FAIL

    def to_json(self) -> str:
        doc: dict[str, object] = {
            "reuse": self.id_reuse_policy.value,
            "conflict": self.conflict().value,
        }
        for name, ms in (("exec_ms", self.execution_timeout_ms),
                         ("run_ms", self.run_timeout_ms), ("task_ms", self.task_timeout_ms)):
            if ms:
                doc[name] = ms
        if self.start_signal:
            doc["signal"] = self.start_signal
        if self.header:
            doc["header"] = self.header
        if self.run_retention_ms is not None:
            doc["retention_ms"] = self.run_retention_ms
        if self.cron_schedule:
            doc["cron"] = self.cron_schedule
            doc["backoff_ms"] = self.first_task_backoff_ms
        return json.dumps(doc, separators=(",", ":"))
