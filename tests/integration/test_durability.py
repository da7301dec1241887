"""Durability modes (engine/durability.py) on servers started for the test: Valkey with
AOF on and off, a Valkey replica, and Redis 7.0 (no WAITAOF)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from redis import Redis as SyncRedis

from engine.durability import Durability
from engine.errors import DurabilityError
from sdk import Client, activity, workflow
from sdk._devserver import EmbeddedServer, free_port, port_in_use
from sdk.testing import running_worker
from tests.conftest import unique_prefix

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@activity.defn
async def add_one(x: int) -> int:
    return x + 1


@workflow.defn
class TwoSteps:
    @workflow.run
    async def run(self, x: int) -> int:
        x = await workflow.execute_activity(add_one, x, start_to_close_timeout=timedelta(5))
        return int(
            await workflow.execute_activity(add_one, x, start_to_close_timeout=timedelta(5))
        )


async def run_two_steps(client: Client) -> int:
    async with running_worker(
        client, task_queue="d", workflows=[TwoSteps], activities=[add_one]
    ):
        with anyio.fail_after(20):
            return int(await client.execute_workflow(TwoSteps.run, 1, id="d-1", task_queue="d"))


def waits_served(url: str, command: str) -> int:
    stats = SyncRedis.from_url(url).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(db_dir=tmp_path / "aof", appendfsync="always") as server:
        yield server


async def test_fsync_mode_waits_for_the_aof_on_every_transition(
    aof_server: EmbeddedServer,
) -> None:
    client = await Client.connect(aof_server.url, prefix=unique_prefix(), durability="fsync")
    try:
        assert client.durability == Durability(local_fsync=True)
        before = waits_served(aof_server.url, "waitaof")
        assert await run_two_steps(client) == 3
        # start, 3 workflow tasks, 2 activity completions at least: each one waited.
        assert waits_served(aof_server.url, "waitaof") - before >= 6
    finally:
        await client.close()


async def test_fsync_mode_refuses_a_server_without_aof() -> None:
    with EmbeddedServer() as server, pytest.raises(DurabilityError, match="appendonly yes"):
        await Client.connect(server.url, prefix=unique_prefix(), durability="fsync")


def wait_for_replica(primary_url: str) -> None:
    """Until the replica finished its initial sync (WAIT counts only online replicas)."""
    primary = SyncRedis.from_url(primary_url)
    deadline = time.monotonic() + 15
    while primary.info("replication").get("slave0", {}).get("state") != "online":
        assert time.monotonic() < deadline, "the replica did not come online"
        time.sleep(0.05)


def start_redis_7(port: int, directory: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_in_use(port):
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server failed"
        time.sleep(0.02)
    return proc


async def test_replica_modes_need_the_replicas(
    aof_server: EmbeddedServer, tmp_path: Path
) -> None:
    short = Durability(replicas=1, timeout_ms=100)
    with pytest.raises(DurabilityError, match="replicas 0/1"):
        await Client.connect(aof_server.url, prefix=unique_prefix(), durability=short)
    replica = EmbeddedServer(
        db_dir=tmp_path / "replica",
        appendfsync="always",
        extra_args=["--replicaof", "127.0.0.1", str(aof_server.port)],
    )
    with replica:
        await anyio.to_thread.run_sync(wait_for_replica, aof_server.url)
        for spec in ("replicas:1", "fsync+replicas:1"):
            client = await Client.connect(aof_server.url, prefix=unique_prefix(), durability=spec)
            try:
                assert await run_two_steps(client) == 3
            finally:
                await client.close()
        assert waits_served(aof_server.url, "wait") >= 6


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
async def test_fsync_mode_on_a_server_without_waitaof_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    proc = await anyio.to_thread.run_sync(start_redis_7, port, tmp_path)
    try:
        url = f"redis://127.0.0.1:{port}"
        version = tuple(int(p) for p in SyncRedis.from_url(url).info("server")["redis_version"]
                        .split(".")[:2])
        if version >= (7, 2):
            pytest.skip(f"this redis-server ({version}) has WAITAOF")
        with pytest.raises(DurabilityError, match=r"Redis 7\.2\+"):
            await Client.connect(url, prefix=unique_prefix(), durability="fsync")
    finally:
        proc.kill()
        proc.wait()


async def test_a_worker_goes_on_when_the_waits_fall_short(
    real_client: Client, redis_url: str
) -> None:
    """A worker's waits are not strict (docs/durability.md): a replica falling behind is
    logged, it never stops the worker. Its claim sweeps used to raise DurabilityError out
    of the liveness loop, which ended worker.run()."""
    worker_client = await Client.connect(redis_url, prefix=real_client.keys.prefix)
    try:
        # No replica here: every WAIT falls short (set after connect, which refuses it).
        worker_client.store.durability = Durability(replicas=1, timeout_ms=10)
        async with running_worker(
            worker_client, task_queue="d", workflows=[TwoSteps], activities=[add_one],
            liveness_timeout=0.5,
        ) as worker:
            with anyio.fail_after(20):
                handle = await real_client.start_workflow(
                    TwoSteps.run, 1, id="d-short", task_queue="d")
                assert await handle.result() == 3
                await anyio.sleep(0.5)  # a few liveness passes (claims) more
            assert worker.stats["workflow_tasks"] >= 1
    finally:
        await worker_client.close()
