"""What `workflow.info()` answers: the run's WorkflowInfo, with its parent when it is a
child workflow. The replay machine keeps one (engine/machine.py re-exports both);
engine/run_info.py fills it from the run's WorkflowExecutionStarted event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine.search_attributes import TypedSearchAttributes, from_wire, plain


@dataclass(frozen=True)
class WorkflowInfo:
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    attempt: int = 1
    #: From the run's WorkflowExecutionStarted (engine/run_info.py), temporalio's names.
    first_execution_run_id: str = ""
    continued_run_id: str | None = None
    execution_timeout: timedelta | None = None
    run_timeout: timedelta | None = None
    task_timeout: timedelta | None = None
    #: The memo payload as started (b"" none): sdk.workflow.memo() decodes it.
    raw_memo: bytes = b""
    #: The run's search attributes, wire form (engine/search_attributes.py).
    raw_search_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def typed_search_attributes(self) -> TypedSearchAttributes:
        return from_wire(self.raw_search_attributes)

    @property
    def search_attributes(self) -> dict[str, Any]:
        """Name -> value (temporalio's legacy form has lists of values here)."""
        return plain(self.typed_search_attributes)
    #: The cron schedule of a cron workflow's runs (None: not a cron workflow).
    cron_schedule: str | None = None
    #: A child workflow's parent (temporalio's `ParentInfo`), None for a top-level run.
    parent: ParentInfo | None = None


@dataclass(frozen=True)
class ParentInfo:
    """The parent of a child workflow, in `workflow.info().parent` (temporalio's name)."""

    workflow_id: str
    run_id: str
    namespace: str = "default"
