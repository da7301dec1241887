"""A worker whose Redis call fails mid-way (connection lost, the reply never seen) must
not lose track of the tasks it held: they are retried, or left to go idle so a live
worker claims them, never touched for ever by a worker that forgot them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.store import Call
from scripts.chaos.workflows import Storm, storm_expected, storm_step
from sdk import Client, Worker

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.chaos]


@pytest.mark.parametrize("applied", [True, False], ids=["reply-lost", "call-lost"])
@pytest.mark.parametrize("function", ["rd_wft_complete", "rd_act_complete",
                                      "rd_act_complete_wft"])
@pytest.mark.timeout(30)
async def test_lost_transition_call_does_not_strand_its_task(
    real_client: Client, function: str, applied: bool
) -> None:
    client = real_client
    store = client.store
    real_call_many = store.call_many
    failed: list[str] = []

    async def call_many(calls: Sequence[Call]) -> list[Any]:
        if not failed and any(c.function == function for c in calls):
            if applied:  # the calls ran, then the connection dropped
                await real_call_many(calls)
            failed.append(function)
            raise RedisConnectionError("connection lost (injected)")
        return await real_call_many(calls)

    store.call_many = call_many  # type: ignore[method-assign]
    worker = Worker(client, task_queue="transient", workflows=[Storm], activities=[storm_step],
                    liveness_timeout=1.0, handle_signals=False)
    if function != "rd_act_complete_wft":  # the two-write activity step, as before
        worker._workflow_tasks.activations.one_write = (  # type: ignore[method-assign]
            lambda *args: None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        handle = await client.start_workflow(Storm.run, 3, 0.01, 0.05, id="t-1",
                                             task_queue="transient")
        # A stranded task would wait for ever; a released one is claimed after the
        # liveness timeout (1 s) at worst.
        with anyio.fail_after(10):
            assert await handle.result() == storm_expected(3)
        worker.shutdown()
    assert failed == [function]
    events = [e async for e in handle.fetch_history()]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
