"""Start options a run keeps, read back from its WorkflowExecutionStarted event: the
run chain's ids, the timeouts and the memo, for `workflow.info()` and `workflow.memo()`.

The Lua `new_run` (engine/lua/00_common.lua) writes them into the event, so a replay
sees exactly what the run was started with."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from engine import events as ev
from engine.workflow_info import ParentInfo, WorkflowInfo


def _duration(ms: int) -> timedelta | None:
    return timedelta(milliseconds=ms) if ms > 0 else None


def started_info(info: WorkflowInfo, event: ev.WorkflowExecutionStarted) -> WorkflowInfo:
    """`info` with the fields the started event carries (older histories carry none:
    the run is then its own first run)."""
    return dataclasses.replace(
        info,
        first_execution_run_id=event.first_execution_run_id or info.run_id,
        continued_run_id=event.continued_run_id or None,
        execution_timeout=_duration(event.execution_timeout_ms),
        run_timeout=_duration(event.run_timeout_ms),
        task_timeout=_duration(event.task_timeout_ms),
        raw_memo=event.memo,
        raw_search_attributes=dict(event.search_attributes),
        cron_schedule=event.cron_schedule or None,
        parent=_parent(event),
    )


def _parent(event: ev.WorkflowExecutionStarted) -> ParentInfo | None:
    if not event.parent_workflow_id:
        return None
    return ParentInfo(workflow_id=event.parent_workflow_id, run_id=event.parent_run_id)
