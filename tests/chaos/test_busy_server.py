"""A server held by a script past its time limit answers every other command with a
BUSY error reply until the script ends (or is killed). That is "not now", like LOADING:
the worker's loops and the client's calls must ride through it. Before, the pollers'
reads (engine/resp.py) raised the BUSY reply as a plain ResponseError, the worker's
`_guard` did not know it, and the worker ended; the client gave up on its calls at once.
Runs on a private redis-server whatever REDURABLE_TEST_URL says: it stalls the server
(REDURABLE_PRIVATE_PORT picks its port, else a free one)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from scripts.chaos.server import PrivateRedis
from scripts.chaos.workflows import Storm, storm_expected, storm_step
from sdk import Client, Worker
from tests.chaos.marks import PRIVATE_SERVER

pytestmark = PRIVATE_SERVER

#: A read-only script that spins until ARGV[1] microseconds have passed.
SPIN = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
while true do
  t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) then return 1 end
end
"""


@pytest.mark.timeout(90)
async def test_worker_and_client_ride_through_a_busy_script(tmp_path: Path) -> None:
    port = int(os.environ.get("REDURABLE_PRIVATE_PORT", "0")) or None
    server = PrivateRedis(tmp_path / "redis", appendfsync="no", port=port).start()
    spinner = Redis.from_url(server.url)
    client: Client | None = None
    try:
        # BUSY after 50 ms of a script, not the default 5 s: a short test.
        await spinner.config_set("busy-reply-threshold", 50)
        client = await Client.connect(server.url)
        await run_through_busy_spells(client, spinner)
        assert client.connection_stats.recovered >= 1
    finally:
        if client is not None:
            await client.close()
        await spinner.aclose()
        server.close()


async def run_through_busy_spells(client: Client, spinner: Redis) -> None:
    worker = Worker(client, task_queue="busy", workflows=[Storm], activities=[storm_step],
                    liveness_timeout=2.0, handle_signals=False)
    expected: dict[str, int] = {}
    handles = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        # Started first (a start-up under BUSY: tests/chaos/test_worker_startup.py).
        first = await client.start_workflow(Storm.run, 0, 0.01, 0.05, id="busy-first",
                                            task_queue="busy")
        with anyio.fail_after(30):
            assert await first.result() == storm_expected(0)
        for i in range(3):
            handles.append(await client.start_workflow(
                Storm.run, i, 0.01, 0.05, id=f"busy-{i}", task_queue="busy"))
            expected[f"busy-{i}"] = storm_expected(i)
            # The script holds the server while the workflows run; a start sent
            # meanwhile is answered BUSY and retried by the client.
            async with anyio.create_task_group() as spin:
                spin.start_soon(spinner.eval, SPIN, 0, 800_000)  # type: ignore[arg-type]
                await anyio.sleep(0.2)
                handles.append(await client.start_workflow(
                    Storm.run, 10 + i, 0.01, 0.05, id=f"busy-during-{i}", task_queue="busy"))
                expected[f"busy-during-{i}"] = storm_expected(10 + i)
        with anyio.fail_after(30):
            for handle in handles:
                assert await handle.result() == expected[handle.id]
        worker.shutdown()
