"""Updates in flight while the worker running them is killed (SIGKILL): each one is
retried by the next worker and applied exactly once, and every caller gets its own
result."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sdk import Client
from tests.integration.test_recovery import workers
from tests.integration.update_workflows import Counter

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.slow]

MODULE = "tests.integration.update_workflows"


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
            results[uid] = await handle.execute_update(Counter.bump, 0.2, id=uid)

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(send, f"u-{i}")
                # Kill the worker while updates are accepted and their timers run.
                while len(results) < 3:
                    await anyio.sleep(0.01)
                w1.kill()
                in_flight = 30 - len(results)
                await pool.spawn()
        assert in_flight > 0
        assert sorted(results.values()) == list(range(1, 31))
        # The same ids again: the same results, nothing applied again.
        for uid in ("u-0", "u-17"):
            assert await handle.execute_update(Counter.bump, 0.2, id=uid) == results[uid]
        await handle.signal(Counter.finish)
        assert await handle.result() == 30
    events = [e async for e in handle.fetch_history()]
    accepted = [e.attributes["update_id"] for e in events
                if e.type == "WorkflowExecutionUpdateAccepted"]
    completed = [e.attributes["update_id"] for e in events
                 if e.type == "WorkflowExecutionUpdateCompleted"]
    assert sorted(accepted) == sorted(results) == sorted(completed)
