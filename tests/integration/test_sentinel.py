"""`redis+sentinel://` on real servers (engine/sentinel.py): a primary, a replica and a
Sentinel started for the test (scripts/chaos/sentinel_group.py). The primary is
SIGKILLed, the Sentinel promotes the replica, and the client and the worker that were
connected before carry on with the new primary by themselves. The same over TLS
(`rediss+sentinel://`, every server on a TLS port only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.functions import library_version
from engine.resp import NotPrimaryError, RespPool
from scripts.chaos.sentinel_group import GroupTls, SentinelGroup
from scripts.chaos.server import redis_server_binary
from sdk import Client, activity, workflow
from sdk.testing import running_worker
from tests.integration.cli_support import redurable
from tests.integration.private_server import make_pki

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.skipif(redis_server_binary() is None, reason="needs Debian's redis-server"),
]


@activity.defn
async def add_one(x: int) -> int:
    return x + 1


@workflow.defn
class StepThenWait:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, x: int) -> int:
        x = await workflow.execute_activity(add_one, x, start_to_close_timeout=timedelta(5))
        await workflow.wait_condition(lambda: self.go)
        return int(await workflow.execute_activity(add_one, x,
                                                   start_to_close_timeout=timedelta(5)))


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    servers = SentinelGroup(tmp_path, replicas=1, sentinels=1).start()
    try:
        yield servers
    finally:
        servers.close()


async def replicated(client: Client) -> None:
    """Every write so far is on the replica (replication is asynchronous: without this,
    the kill may take the last writes with it; docs/reliability.md measures that)."""
    assert await client.redis.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]


async def follow_a_failover(client: Client, group: SentinelGroup) -> None:
    """`client` and a worker of it carry on with the new primary by themselves: a workflow
    started before the primary is killed completes, and one started after runs."""
    async with running_worker(client, task_queue="q", workflows=[StepThenWait],
                              activities=[add_one]):
        handle = await client.start_workflow(StepThenWait.run, 1, id="wf", task_queue="q")
        with anyio.fail_after(10):
            while (await handle.describe()).history_length < 5:  # first activity done
                await anyio.sleep(0.02)
        await replicated(client)
        old = await anyio.to_thread.run_sync(group.kill_primary)
        new = await anyio.to_thread.run_sync(group.wait_failover, old)
        assert new != old
        with anyio.fail_after(30):
            await handle.signal(StepThenWait.proceed)
            assert await handle.result() == 3
        # The client connected before works on the new primary.
        after = await client.start_workflow(StepThenWait.run, 10, id="after", task_queue="q")
        await after.signal(StepThenWait.proceed)
        with anyio.fail_after(30):
            assert await after.result() == 12
    assert client.fast is not None and client.fast.port == new


async def test_client_and_worker_follow_the_primary_across_a_failover(
    group: SentinelGroup,
) -> None:
    async with await Client.connect(group.url, prefix="sent") as client:
        await follow_a_failover(client, group)


async def test_calls_during_the_failover_wait_for_the_new_primary(
    group: SentinelGroup,
) -> None:
    async with await Client.connect(group.url, prefix="sent") as client:
        handle = await client.start_workflow("Wait", id="w", task_queue="q")
        await replicated(client)
        old = await anyio.to_thread.run_sync(group.kill_primary)
        with anyio.fail_after(30):
            # Sent before the replica is promoted: retried until it is.
            await handle.signal("go", 1)
            await client.start_workflow("Wait", id="during", task_queue="q")
        assert group.primary_port() != old
        events = [e.type async for e in handle.fetch_history()]
        assert events == ["WorkflowExecutionStarted", "WorkflowExecutionSignaled"]
        assert client.connection_stats.recovered >= 1


async def test_the_lean_client_refuses_a_replica(group: SentinelGroup) -> None:
    """Right after a failover a Sentinel may still name the old primary, come back as
    a replica: the RESP pool checks ROLE and asks again rather than writing to it."""
    pool = RespPool.from_url(group.url)
    try:
        assert await pool.execute("PING") == b"PONG"
        assert pool.port == group.primary_port()
        replica = group.data_ports[1]

        async def stale_answer() -> tuple[str, int]:
            return "127.0.0.1", replica

        stale = RespPool("", 0, resolver=stale_answer)
        try:
            with pytest.raises(NotPrimaryError, match="is a slave, not the primary"):
                await stale.execute("PING")
        finally:
            await stale.close()
    finally:
        await pool.close()


async def test_the_cli_follows_a_sentinel_url(group: SentinelGroup) -> None:
    loaded = await anyio.run_process(redurable("load-functions", "--redis-url", group.url))
    assert f"version {library_version()} is loaded" in loaded.stdout.decode()
    started = await anyio.run_process(redurable(
        "workflow", "start", "Wait", "--id", "from-cli", "--task-queue", "q",
        "--redis-url", group.url, "--prefix", "sentcli"))
    assert b"from-cli" in started.stdout
    async with await Client.connect(group.url, prefix="sentcli") as client:
        assert (await client.get_workflow_handle("from-cli").describe()).status == "RUNNING"


@pytest.fixture
def tls_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    pki = make_pki(tmp_path)
    tls = GroupTls(ca=pki.ca, server_cert=pki.server_cert, server_key=pki.server_key,
                   client_cert=pki.client_cert, client_key=pki.client_key)
    servers = SentinelGroup(tmp_path, replicas=1, sentinels=1, tls=tls).start()
    try:
        yield servers
    finally:
        servers.close()


async def test_rediss_sentinel_runs_and_follows_a_failover_over_tls(
    tls_group: SentinelGroup,
) -> None:
    """`rediss+sentinel://`: the Sentinels and the data nodes speak TLS only (and want a
    client certificate), so every connection of both clients is TLS, before and after
    a failover."""
    assert tls_group.url.startswith("rediss+sentinel://")
    async with await Client.connect(tls_group.url, prefix="senttls") as client:
        assert client.fast is not None and client.fast.ssl_context is not None
        await follow_a_failover(client, tls_group)


async def test_a_plain_sentinel_url_cannot_reach_tls_sentinels(
    tls_group: SentinelGroup,
) -> None:
    plain = tls_group.url.replace("rediss+sentinel://", "redis+sentinel://", 1)
    with pytest.raises(RedisConnectionError):
        await Client.connect(plain, prefix="senttls")
