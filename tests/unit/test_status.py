"""Workflow statuses are WorkflowExecutionStatus members wherever the SDK hands them out,
and the Lua library writes no status the enum does not know."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from engine.children import ParentClosePolicy
from engine.functions import library_source
from engine.start_options import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from engine.status import WorkflowExecutionStatus
from sdk import Client, WorkflowExecution

pytestmark = pytest.mark.anyio

DESIGN_STATUSES = "RUNNING COMPLETED FAILED CANCELED TERMINATED TIMED_OUT CONTINUED_AS_NEW"


def test_members_are_the_designed_statuses_and_compare_as_text() -> None:
    assert [s.value for s in WorkflowExecutionStatus] == DESIGN_STATUSES.split()
    assert WorkflowExecutionStatus.RUNNING == "RUNNING"
    assert f"{WorkflowExecutionStatus.TIMED_OUT}" == "TIMED_OUT"
    assert WorkflowExecutionStatus.parse(b"FAILED") is WorkflowExecutionStatus.FAILED
    with pytest.raises(ValueError):
        WorkflowExecutionStatus.parse("running")


def test_the_lua_library_writes_and_compares_known_statuses_only() -> None:
    source = library_source()
    written = re.findall(r"(?:close_run\(c|set_status\(c, nil), '(\w+)'", source)
    compared = re.findall(r"[=~]= '([A-Z][A-Z_]{2,})'", source)
    assert set(written) == {"RUNNING", "COMPLETED", "FAILED", "CANCELED", "TERMINATED",
                            "TIMED_OUT", "CONTINUED_AS_NEW"}
    policies = {p.value for p in (*WorkflowIDReusePolicy, *WorkflowIDConflictPolicy)}
    policies |= {p.name for p in ParentClosePolicy}
    # Run chains (15_run_chain.lua) compare the statuses a cron chain goes on after; the
    # hand-off (85_handoff.lua) tells a child's close apart by its status.
    assert set(compared) - policies == {"RUNNING", "COMPLETED", "FAILED", "TIMED_OUT",
                                        "CANCELED", "CONTINUED_AS_NEW"}
    for status in [*written, *(set(compared) - policies)]:
        WorkflowExecutionStatus(status)


@pytest.mark.parametrize("ms", [0, 1, 999, 1_700_000_000_123, 1_799_999_999_999, 4_102_444_800_001])
def test_cursor_is_the_exact_start_ms(ms: int) -> None:
    start = datetime.fromtimestamp(ms / 1000, tz=UTC)
    row = WorkflowExecution("w", "r", WorkflowExecutionStatus.RUNNING, "T", "q", start, None)
    assert row.cursor == (ms, "w")


async def test_describe_and_list_give_members(fake_client: Client) -> None:
    handle = await fake_client.start_workflow("Order", 3, id="order-3", task_queue="q")
    described = await handle.describe()
    assert described.status is WorkflowExecutionStatus.RUNNING
    [listed] = [e async for e in fake_client.list_workflows(status="RUNNING")]
    assert listed.status is WorkflowExecutionStatus.RUNNING
    assert listed.cursor == described.cursor
    assert listed.cursor[0] > 0
    await handle.terminate("done")
    assert (await handle.describe()).status is WorkflowExecutionStatus.TERMINATED
    rows = [e async for e in fake_client.list_workflows(status=WorkflowExecutionStatus.TERMINATED)]
    assert [r.id for r in rows] == ["order-3"]
