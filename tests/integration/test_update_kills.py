"""Updates in flight while the worker running them is killed (SIGKILL): each one is
retried by the next worker and applied exactly once, and every caller gets its own
result. The kill is made to fall while every update is accepted and its handler still
waits (for a signal), and while more are admitted with no worker alive."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sdk import Client, WorkflowHandle
from tests.integration.test_recovery import workers
from tests.integration.update_workflows import Counter

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.slow]

MODULE = "tests.integration.update_workflows"


async def accepted_ids(handle: WorkflowHandle) -> list[str]:
    return [str(e.attributes["update_id"]) async for e in handle.fetch_history()
            if e.type == "WorkflowExecutionUpdateAccepted"]


@pytest.mark.timeout(120)
async def test_updates_during_a_worker_kill_are_applied_once(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    client = real_client
    async with workers(redis_url, client, "uq", MODULE, tmp_path) as pool:
        w1 = await pool.spawn()
        handle = await client.start_workflow(Counter.run, id="counter-kill", task_queue="uq")
        results: dict[str, int] = {}

        async def send(uid: str) -> None:
            results[uid] = await handle.execute_update(Counter.hold, id=uid)

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(send, f"held-{i}")
                while len(await accepted_ids(handle)) < 20:
                    await anyio.sleep(0.02)
                w1.kill()  # every handler accepted and waiting: all in flight
                assert results == {}
                for i in range(10):  # admitted while no worker lives
                    tg.start_soon(send, f"late-{i}")
                await pool.spawn()
                await handle.signal(Counter.release)
        assert sorted(results.values()) == list(range(1, 31))
        # The same ids again: the same results, nothing applied again.
        for uid in ("held-0", "late-7"):
            assert await handle.execute_update(Counter.hold, id=uid) == results[uid]
        await handle.signal(Counter.finish)
        assert await handle.result() == 30
    events = [e async for e in handle.fetch_history()]
    accepted = [e.attributes["update_id"] for e in events
                if e.type == "WorkflowExecutionUpdateAccepted"]
    completed = [e.attributes["update_id"] for e in events
                 if e.type == "WorkflowExecutionUpdateCompleted"]
    assert sorted(accepted) == sorted(results) == sorted(completed)
