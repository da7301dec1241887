"""A suspect (a task claimed from a dead worker that went down with workers before)
waits for the other claimed tasks to finish before it runs. A worker that stopped
gracefully meanwhile left it pending on itself, unseen by its drain: nobody claims from
a worker that stopped, so it waited for the liveness timeout. The drain now hands the
waiting suspects back with the backlogs, and they do not start afterwards."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from sdk import Client, Worker, activity, workflow
from sdk.worker.task_entry import TaskEntry

pytestmark = pytest.mark.anyio


@activity.defn
async def noop() -> None:
    return None


@workflow.defn
class Idle:
    @workflow.run
    async def run(self) -> None:
        return None


async def test_waiting_suspects_are_handed_back_by_the_drain(fake_client: Client) -> None:
    worker = Worker(fake_client, task_queue="q", workflows=[Idle], activities=[noop],
                    handle_signals=False)
    plumbing = worker._plumbing
    started: list[TaskEntry] = []
    released: list[TaskEntry] = []

    async def run_now(tasks: list[TaskEntry] | None = None) -> None:
        started.extend(tasks or [])

    async def release(tasks: Sequence[TaskEntry]) -> None:
        released.extend(tasks)

    worker._workflow_tasks.run_now = run_now  # type: ignore[method-assign]
    def start(tasks: list[TaskEntry]) -> None:
        started.extend(tasks)

    worker._activity_tasks.start = start  # type: ignore[method-assign]
    plumbing.release = release  # type: ignore[method-assign]
    wf_fields = {b"workflow_id": b"w", b"run_id": b"r", b"epoch": b"1"}
    act_fields = {b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1",
                  b"attempt": b"2", b"activity_type": b"noop"}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            plumbing.claimed_in_flight = 1  # another claimed task still runs
            worker._workflow_tasks.adopt(
                plumbing.workflow_streams[0], [(b"1-0", wf_fields)], suspects={b"1-0"})
            worker._activity_tasks.adopt(
                plumbing.activity_streams[0], [(b"2-0", act_fields)], suspects={b"2-0"})
            await anyio.sleep(0.05)
            await worker._drain()
    assert started == []
    assert sorted(t.msg_id for t in released) == ["1-0", "2-0"]


async def test_a_suspect_runs_once_the_claimed_tasks_are_done(fake_client: Client) -> None:
    worker = Worker(fake_client, task_queue="q", workflows=[Idle], handle_signals=False)
    plumbing = worker._plumbing
    started: list[TaskEntry] = []

    async def run_now(tasks: list[TaskEntry] | None = None) -> None:
        started.extend(tasks or [])

    worker._workflow_tasks.run_now = run_now  # type: ignore[method-assign]
    wf_fields = {b"workflow_id": b"w", b"run_id": b"r", b"epoch": b"1"}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            plumbing.tg = tg
            plumbing.claimed_in_flight = 1
            worker._workflow_tasks.adopt(
                plumbing.workflow_streams[0], [(b"1-0", wf_fields)], suspects={b"1-0"})
            await anyio.sleep(0.05)
            assert started == []
            plumbing.claimed_in_flight = 0
            await anyio.sleep(0.1)
    assert [t.msg_id for t in started] == ["1-0"]
    assert plumbing.take_waiting_suspects() == []
