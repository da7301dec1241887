"""A worker started while its server cannot serve yet comes up once it can
(sdk/worker/startup.py): held by a script past its time limit (BUSY), or down and
started again (connection refused). Before, the first error of its start-up ended
`Worker.run()`. Each runs on a private redis-server whatever REDURABLE_TEST_URL says
(REDURABLE_PRIVATE_PORT picks its port, else a free one)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from scripts.chaos.server import PrivateRedis
from scripts.chaos.workflows import Storm, storm_expected, storm_step
from sdk import Client, Worker
from tests.chaos.marks import PRIVATE_SERVER
from tests.chaos.test_busy_server import SPIN

pytestmark = PRIVATE_SERVER


def _server(tmp_path: Path) -> PrivateRedis:
    port = int(os.environ.get("REDURABLE_PRIVATE_PORT", "0")) or None
    return PrivateRedis(tmp_path / "redis", appendfsync="always", port=port).start()


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue="start", workflows=[Storm], activities=[storm_step],
                  liveness_timeout=2.0, handle_signals=False)


async def _runs_a_workflow(client: Client, worker: Worker, wid: str) -> None:
    """The worker comes up and runs a workflow, then stops (and deregisters)."""
    handle = await client.start_workflow(Storm.run, 1, 0.01, 0.05, id=wid, task_queue="start")
    with anyio.fail_after(30):
        assert await handle.result() == storm_expected(1)
    worker.shutdown()


def _retries(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "worker_start_retry"]


@pytest.mark.timeout(60)
async def test_a_worker_started_while_a_script_holds_the_server_comes_up_after_it(
    tmp_path: Path,
) -> None:
    server = _server(tmp_path)
    spinner = Redis.from_url(server.url)
    client: Client | None = None
    try:
        await spinner.config_set("busy-reply-threshold", 50)
        client = await Client.connect(server.url)
        worker = _worker(client)
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(spinner.eval, SPIN, 0, 1_500_000)  # type: ignore[arg-type]
                await anyio.sleep(0.2)  # past the threshold: every other command is BUSY
                tg.start_soon(worker.run)
                await _runs_a_workflow(client, worker, "busy-start")
        retries = _retries(logs)
        assert retries and all(r["error"].startswith("BUSY ") for r in retries), retries
        assert retries[0]["step"] == "create_groups"
        channel = client.keys.worker_presence(worker.identity)
        assert await client.redis.pubsub_numsub(channel) == [(channel.encode(), 0)]
        assert await client.redis.zscore(client.keys.workers("start"), worker.identity) is None
    finally:
        if client is not None:
            await client.close()
        await spinner.aclose()
        server.close()


@pytest.mark.timeout(60)
async def test_a_worker_started_while_the_server_is_down_comes_up_when_it_is_back(
    tmp_path: Path,
) -> None:
    """The client was connected; the server then went down (its data kept in the AOF)
    and the worker starts before it is back."""
    server = _server(tmp_path)
    client: Client | None = None
    try:
        client = await Client.connect(server.url)
        worker = _worker(client)
        server.kill()
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                with anyio.fail_after(10):
                    while not _retries(logs):
                        await anyio.sleep(0.01)
                await anyio.sleep(0.5)
                server.start()
                await _runs_a_workflow(client, worker, "down-start")
        assert _retries(logs)[0]["step"] == "create_groups"
    finally:
        if client is not None:
            await client.close()
        server.close()


@pytest.mark.timeout(60)
async def test_a_shutdown_while_the_server_is_busy_ends_the_start_up_at_once(
    tmp_path: Path,
) -> None:
    """Nothing is left registered, although the server answers BUSY to the clean-up's
    own calls: the steps that would have needed it never succeeded."""
    server = _server(tmp_path)
    spinner = Redis.from_url(server.url)
    client: Client | None = None
    try:
        await spinner.config_set("busy-reply-threshold", 50)
        client = await Client.connect(server.url)
        worker = _worker(client)
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(spinner.eval, SPIN, 0, 2_000_000)  # type: ignore[arg-type]
                await anyio.sleep(0.2)
                ended = anyio.Event()

                async def run() -> None:
                    await worker.run()
                    ended.set()

                tg.start_soon(run)
                with anyio.fail_after(10):
                    while len(_retries(logs)) < 3:
                        await anyio.sleep(0.01)
                worker.shutdown()
                with anyio.fail_after(1):
                    await ended.wait()
        assert [e["event"] for e in logs].count("worker_started") == 0
        channel = client.keys.worker_presence(worker.identity)
        assert await client.redis.pubsub_numsub(channel) == [(channel.encode(), 0)]
        assert await client.redis.zscore(client.keys.workers("start"), worker.identity) is None
    finally:
        if client is not None:
            await client.close()
        await spinner.aclose()
        server.close()
