"""Cluster mode end to end on a real Redis Cluster (issue 12): a Client connected to
any node routes every call by slot. Runs when REDURABLE_TEST_CLUSTER_URL names a node
of a cluster (`python -m scripts.cluster up`; .ci/run starts one), else skips.

Start, signal, activity, timer, query and result through workers in this process; a
worker process killed with SIGKILL and its tasks claimed by another; functions loaded
on every primary; the CLI's `workflow start`; the dead letters of every node."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.cluster_redis import as_cluster
from engine.functions import (
    VERSION_FUNCTION,
    function_name,
    library_name,
    library_version,
    prune_libraries,
)
from engine.library import build_library, lua_files, version_of_source
from engine.resp_cluster import ClusterRespPool, key_slot
from sdk import Client, activity, workflow
from sdk.examples.order import Order
from sdk.testing import running_worker
from tests.conftest import unique_prefix
from tests.integration.cli_support import redurable
from tests.integration.worker_proc import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def cluster_url() -> str:
    url = os.environ.get("REDURABLE_TEST_CLUSTER_URL")
    if not url:
        pytest.skip("REDURABLE_TEST_CLUSTER_URL is not set (python -m scripts.cluster up)")
    return url


@pytest.fixture
async def cluster_client(cluster_url: str) -> AsyncIterator[Client]:
    prefix = unique_prefix()
    client = await Client.connect(cluster_url, prefix=prefix)
    try:
        yield client
    finally:
        async for key in client.redis.scan_iter(match=f"{prefix}:*", count=1000):
            await client.redis.delete(key)
        await client.close()


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.names: list[str] = []

    @workflow.signal
    def add(self, name: str) -> None:
        self.names.append(name)

    @workflow.query
    def seen(self) -> list[str]:
        return self.names

    @workflow.run
    async def run(self, wanted: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.names) >= wanted)
        await workflow.sleep(0.05)  # a timer
        return [
            await workflow.execute_activity(
                shout, name, start_to_close_timeout=timedelta(seconds=10))
            for name in self.names
        ]


async def test_connect_detects_cluster_mode(cluster_client: Client) -> None:
    assert isinstance(cluster_client.fast, ClusterRespPool)
    cluster = as_cluster(cluster_client.redis)
    assert cluster is not None
    primaries = cluster.get_primaries()
    assert len(primaries) >= 2
    for node in primaries:  # the library is on every primary
        version = await cluster.execute_command("FCALL_RO", function_name(VERSION_FUNCTION), 0,
                                                target_nodes=node)
        assert version.decode() == library_version()
    # The namespace's shards land on more than one primary.
    await cluster_client.fast.refresh()
    shard_nodes = {cluster_client.fast.owner_of(cluster_client.keys.timers(s))
                   for s in range(cluster_client.keys.shards)}
    assert len(shard_nodes) >= 2


async def test_workflows_on_every_shard_run_to_the_end(cluster_client: Client) -> None:
    queue = "q-" + uuid.uuid4().hex[:6]
    keys = cluster_client.keys
    # Ids whose shards cover every shard (so every primary holding one is used).
    ids: dict[int, str] = {}
    n = 0
    while len(ids) < keys.shards:
        ids.setdefault(keys.shard(f"greet-{n}"), f"greet-{n}")
        n += 1
    async with running_worker(cluster_client, task_queue=queue, workflows=[Greeter],
                              activities=[shout]):
        handles = [await cluster_client.start_workflow(Greeter.run, 2, id=wf_id,
                                                       task_queue=queue)
                   for wf_id in ids.values()]
        for handle in handles:
            await handle.signal(Greeter.add, "ada")
        with anyio.fail_after(20):
            for handle in handles:
                while await handle.query(Greeter.seen) != ["ada"]:
                    await anyio.sleep(0.02)
        for handle in handles:
            await handle.signal(Greeter.add, "bob")
        with anyio.fail_after(30):
            results = [await handle.result() for handle in handles]
    assert results == [["ADA", "BOB"]] * len(handles)


@pytest.mark.timeout(90)
async def test_a_killed_worker_s_tasks_are_claimed(
    cluster_url: str, cluster_client: Client, tmp_path: Path
) -> None:
    queue = "orders-" + uuid.uuid4().hex[:6]
    prefix = cluster_client.keys.prefix
    log = (tmp_path / "workers.log").open("wb")
    first = WorkerProcess(cluster_url, prefix, queue, "sdk.examples.order", log=log).start()
    second: WorkerProcess | None = None
    try:
        await anyio.to_thread.run_sync(first.wait_ready)
        handle = await cluster_client.start_workflow(Order.run, args=[7, 8.0],
                                                     id="order-" + queue,
                                                     task_queue=queue)
        with anyio.fail_after(30):
            while (await handle.query(Order.get_status))["state"] != "Paid":
                await anyio.sleep(0.05)
        first.kill()
        second = WorkerProcess(cluster_url, prefix, queue, "sdk.examples.order", log=log)
        second.start()
        await anyio.to_thread.run_sync(second.wait_ready)
        await handle.signal(Order.picked_up)
        await handle.signal(Order.delivered)
        with anyio.fail_after(30):
            assert await handle.result() == "Completed"
    finally:
        first.kill()
        if second is not None:
            second.kill()
        log.close()


async def test_a_primary_without_the_library_gets_it_on_first_call(
    cluster_client: Client,
) -> None:
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    wf_id = "lib-" + uuid.uuid4().hex[:6]
    await fast.refresh()
    host, port = fast.owner_of(cluster_client.keys.workflow(wf_id))
    async with Redis(host=host, port=port) as node:
        await node.function_delete(library_name())
    loaded = fast.libraries_loaded
    await cluster_client.start_workflow("Nothing", id=wf_id, task_queue="nowhere")
    assert fast.libraries_loaded == loaded + 1
    assert key_slot(cluster_client.keys.workflow(wf_id)) == key_slot(
        cluster_client.keys.history(wf_id))


async def test_a_primary_with_only_another_version_gets_this_one_mid_run(
    cluster_client: Client,
) -> None:
    """Rolling deploys (docs/deploying.md): a primary that has only another version of
    the library (another process's, or an older one) answers "not found" for this
    version's names; the call loads this version beside it and goes on."""
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    wf_id = "other-" + uuid.uuid4().hex[:6]
    await fast.refresh()
    host, port = fast.owner_of(cluster_client.keys.workflow(wf_id))
    other = version_of_source(lua_files() + "\n-- another version\n")
    async with Redis(host=host, port=port) as node:
        await node.function_delete(library_name())
        with contextlib.suppress(ResponseError):  # left by an earlier run
            await node.function_load(build_library(lua_files() + "\n-- another version\n"))
        loaded = fast.libraries_loaded
        await cluster_client.start_workflow("Nothing", id=wf_id, task_queue="nowhere")
        assert fast.libraries_loaded == loaded + 1
        # Both versions are on the node now: the other one's processes keep theirs.
        versions = {e[b"library_name"].decode()
                    for e in _library_entries(await node.function_list())}
        assert {library_name(), library_name(other)} <= versions
        report = await prune_libraries(cluster_client.redis, dry_run=True)
        assert other in report.removed and library_version() in report.in_use
        await node.function_delete(library_name(other))


def _library_entries(reply: list[Any]) -> list[dict[bytes, Any]]:
    """FUNCTION LIST entries as dicts (RESP2 gives flat lists)."""
    return [e if isinstance(e, dict) else dict(zip(e[0::2], e[1::2], strict=True))
            for e in reply]


async def test_moved_is_followed_and_the_map_refreshed(cluster_client: Client) -> None:
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    key = cluster_client.keys.workflow("moved-" + uuid.uuid4().hex[:6])
    owner = fast.owner_of(key)
    wrong = next(a for a in fast.primaries if a != owner)
    fast._owner[key_slot(key)] = wrong  # a stale map, as after a slot migration
    assert await fast.execute("HSET", key, "f", "v") == 1
    assert await fast.execute("HGET", key, "f") == b"v"
    assert fast.owner_of(key) == owner


async def test_a_durability_wait_goes_to_every_node_written(cluster_client: Client) -> None:
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    keys = cluster_client.keys
    by_node: dict[tuple[str, int], str] = {}
    for shard in range(keys.shards):
        by_node.setdefault(fast.owner_of(keys.timers(shard)), keys.index_start(shard))
    assert len(by_node) >= 2

    async def waits() -> dict[tuple[str, int], int]:
        counts = {}
        for host, port in by_node:
            async with Redis(host=host, port=port) as node:
                stats = await node.info("commandstats")
                counts[(host, port)] = int(stats.get("cmdstat_wait", {}).get("calls", 0))
        return counts

    before = await waits()
    replies = await fast.execute_many(
        [*(("ZADD", key, 1, "m") for key in by_node.values()), ("WAIT", 0, 100)])
    assert replies[-1] == 0  # no replicas: the weakest answer of all nodes
    after = await waits()
    assert all(after[node] == before[node] + 1 for node in by_node)


async def test_cli_workflow_start_reports_success(
    cluster_url: str, cluster_client: Client
) -> None:
    """The run is created on its shard's node and the task queue registered (SADD) on
    another's: the CLI says started, exit 0 (it reported an error before cluster mode)."""
    prefix = cluster_client.keys.prefix
    done = await anyio.run_process(
        redurable("workflow", "start", "Order", "-q", "orders", "--id", "cli-1", "-i", "3",
                  "--redis-url", cluster_url, "--prefix", prefix), check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert "Started Order cli-1" in done.stdout.decode()
    assert await cluster_client.redis.sismember(cluster_client.keys.task_queues(), "orders")
    described = await cluster_client.get_workflow_handle("cli-1").describe()
    assert described.status.name == "RUNNING"


async def test_dead_letters_of_every_node_are_listed_counted_and_acted_on(
    cluster_client: Client,
) -> None:
    """Dead letters of the shards and of several task queues' query streams, whose keys
    are on different masters: `redurable dlq` (through the Client) lists, counts,
    requeues and drops them all, each read and write on the node of its own slot."""
    fast = cluster_client.fast
    assert isinstance(fast, ClusterRespPool)
    await fast.refresh()
    keys, redis = cluster_client.keys, cluster_client.redis
    queues = [f"q{i}" for i in range(6)]
    await redis.sadd(keys.task_queues(), *queues)
    expected = []
    for shard in range(keys.shards):
        stream = keys.workflow_tasks(shard, "q0")
        sid: Any = await redis.xadd(keys.dead_letters(shard), {"stream": stream, "reason": "r"})
        expected.append(f"{shard}/{sid.decode()}")
    for queue in queues:
        stream = keys.queries(queue)
        sid = await redis.xadd(keys.stream_dead_letters(stream), {
            "stream": stream, "reason": "r", "workflow_id": "w", "name": "status"})
        expected.append(f"queries:{queue}/{sid.decode()}")
    nodes = {fast.owner_of(keys.stream_dead_letters(keys.queries(q))) for q in queues}
    assert len(nodes) >= 2  # the query streams' dead letters are spread over masters

    assert [d.id for d in await cluster_client.list_dead_letters()] == expected
    assert await cluster_client.count_dead_letters() == len(expected)
    newest = await cluster_client.list_dead_letters(limit=3, newest_first=True)
    assert len(newest) == 3
    for queue in queues[:3]:
        letter = await cluster_client.requeue_dead_letter(
            next(i for i in expected if i.startswith(f"queries:{queue}/")))
        assert letter.kind == "query"
        assert await redis.xlen(keys.queries(queue)) == 1
    for remaining in [d.id for d in await cluster_client.list_dead_letters()]:
        await cluster_client.drop_dead_letter(remaining)
    assert await cluster_client.count_dead_letters() == 0
