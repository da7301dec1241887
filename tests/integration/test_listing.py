"""list_workflows pages across shards and resumes from a cursor without loss or repeats."""

from __future__ import annotations

import anyio
import pytest

from sdk import Client, workflow

pytestmark = pytest.mark.anyio


@workflow.defn
class Idle:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


async def test_resume_after_cursor(client: Client) -> None:
    ids = {f"wf-{i:02d}" for i in range(23)}
    async def start(workflow_id: str) -> None:
        await client.start_workflow(Idle.run, id=workflow_id, task_queue="q")

    async with anyio.create_task_group() as tg:  # many share a start millisecond
        for wf_id in ids:
            tg.start_soon(start, wf_id)
    seen: list[str] = []
    after: tuple[int, str] | None = None
    while True:
        page = [wf async for wf in client.list_workflows(page_size=5, after=after)][:5]
        if not page:
            break
        seen += [wf.id for wf in page]
        after = page[-1].cursor
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    starts = [wf.cursor async for wf in client.list_workflows(page_size=4)]
    assert starts == sorted(starts, reverse=True)
