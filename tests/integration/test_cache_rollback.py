"""A worker's cached run ahead of the stored history: what a failover to a replica that
had not got the last transitions leaves behind (docs/reliability.md "Cluster failover").

The namespace's state is rolled back to a snapshot taken before transitions the worker
saw committed; its cache still holds them. The next workflow task must replay what is
stored, not run on the cache: here an update brings a task with no new history entry,
the case where the cache's cursor check alone saw nothing amiss (the cluster failover
chaos scenario found runs left open for good that way)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
import redis

from engine import events as ev
from sdk import Client, activity, workflow
from sdk.testing import running_worker

# single_server: the snapshot is taken and restored with SCAN, DUMP and RESTORE on one
# server's keyspace.
pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.single_server]

TQ = "rollback"


@activity.defn
async def stamp() -> str:
    return "stamped"


@workflow.defn
class GoThenFinish:
    def __init__(self) -> None:
        self.go = False
        self.finish = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        stamped: str = await workflow.execute_activity(
            stamp, start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: self.finish)
        return stamped

    @workflow.signal
    def go_on(self) -> None:
        self.go = True

    @workflow.signal
    def end(self) -> None:
        self.finish = True

    @workflow.update
    def ping(self) -> str:
        return "went" if self.go else "waiting"


def _snapshot(server: redis.Redis, prefix: str, history: str) -> dict[bytes, bytes]:
    """Every key of the namespace but the task streams (a worker blocks reading them):
    of the streams, only the workflow's history."""
    kept: dict[bytes, bytes] = {}
    for key in server.scan_iter(match=f"{prefix}*"):
        if server.type(key) != b"stream" or key == history.encode():
            dumped = server.dump(key)
            assert dumped is not None
            kept[key] = dumped
    return kept


def _restore(server: redis.Redis, prefix: str, snapshot: dict[bytes, bytes]) -> None:
    for key in server.scan_iter(match=f"{prefix}*"):
        if key not in snapshot and server.type(key) != b"stream":
            server.delete(key)
    for key, dumped in snapshot.items():
        server.restore(key, 0, dumped, replace=True)


@pytest.mark.timeout(60)
async def test_a_cache_ahead_of_a_rolled_back_history_is_replayed(
    real_client: Client, redis_url: str
) -> None:
    client = real_client
    server = redis.Redis.from_url(redis_url)
    async with running_worker(client, task_queue=TQ, workflows=[GoThenFinish],
                              activities=[stamp]):
        handle = await client.start_workflow(GoThenFinish.run, id="rb-1", task_queue=TQ)
        assert await handle.execute_update(GoThenFinish.ping) == "waiting"
        snapshot = _snapshot(server, client.keys.prefix, client.keys.history("rb-1"))
        assert client.keys.history("rb-1").encode() in snapshot
        await handle.signal(GoThenFinish.go_on)
        with anyio.fail_after(10):  # the activity ran and its result was seen
            while await handle.execute_update(GoThenFinish.ping) != "went" or not any(
                isinstance(e, ev.ActivityTaskCompleted)
                for _, e in await client.store.read_history("rb-1")
            ):
                await anyio.sleep(0.05)

        # The failover: the signal, the activity and the updates since are gone.
        _restore(server, client.keys.prefix, snapshot)
        kinds = [type(e).__name__ for _, e in await client.store.read_history("rb-1")]
        assert "WorkflowExecutionSignaled" not in kinds

        # The cached run saw the signal; what is stored did not.
        assert await handle.execute_update(GoThenFinish.ping) == "waiting"
        await handle.signal(GoThenFinish.go_on)
        await handle.signal(GoThenFinish.end)
        with anyio.fail_after(15):
            assert await handle.result() == "stamped"
    events = [e for _, e in await client.store.read_history("rb-1")]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert sum(isinstance(e, ev.ActivityTaskScheduled) for e in events) == 1
    server.close()
