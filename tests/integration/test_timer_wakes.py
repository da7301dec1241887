"""A timer that a client added fires when due although the worker holding its shard's
timer lease hangs (sdk/worker/timer_wakes.py): the client's Function writes a wake
entry that the other worker's poller reads, and that worker scans for the timer
without the lease. Before, the timer waited for the lease to lapse (3 s) and for the
other worker's next look at the shard."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import anyio
import pytest

from sdk import Client, WorkflowFailureError, WorkflowTimeoutError
from sdk.worker.plumbing import READ_BLOCK_MS
from tests.integration.helpers import eventually
from tests.integration.worker_proc import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: The workflows of the worker subprocesses (`Hold` runs until signalled).
MODULE = "tests.integration.schedule_workflows"


async def test_a_client_timer_fires_when_due_while_the_lease_holder_hangs(
    real_client: Client, redis_url: str
) -> None:
    client = real_client
    keys = client.keys
    shards = range(keys.shards)
    holder = WorkerProcess(redis_url, keys.prefix, "q", MODULE, liveness=5.0).start()
    other = WorkerProcess(redis_url, keys.prefix, "q", MODULE, liveness=5.0)
    try:
        await anyio.to_thread.run_sync(holder.wait_ready)

        async def holds_all() -> bool:
            values = [await client.redis.get(keys.timer_lease(s)) for s in shards]
            return values == [holder.identity.encode()] * keys.shards

        await eventually(holds_all)
        other.start()
        await anyio.to_thread.run_sync(other.wait_ready)
        await anyio.sleep(0.3)  # the other's loops settle: it looks, finds every lease held
        holder.send(signal.SIGSTOP)
        # Hung: alive to the death watch (its connections stay open), scanning nothing,
        # its reads still blocked at the server (the oldest: the first served). It reads
        # no wake stream of a shard it holds; on a cluster every worker reads them all,
        # and a hung worker's reads end within READ_BLOCK_MS (sdk/worker/timer_wakes.py).
        if client.store.reads_kept:
            await anyio.sleep(READ_BLOCK_MS / 1000 + 0.1)
        workflow_id = "hung-holder"
        lease = keys.timer_lease(keys.shard(workflow_id))
        left_ms = await client.redis.pttl(lease)
        lapse_at = time.monotonic() + left_ms / 1000
        assert left_ms > 1000, left_ms  # renewed at most a second before the hang

        started = time.monotonic()
        # The run timeout is a timer the client's start adds: it wakes no worker of
        # its own; the holder would fire it at its next scan, which never comes.
        handle = await client.start_workflow("Hold", id=workflow_id, task_queue="q",
                                             run_timeout=timedelta(milliseconds=500))
        with anyio.fail_after(15), pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        took = time.monotonic() - started
        assert isinstance(caught.value.cause, WorkflowTimeoutError)
        # Fired by the other worker when due, not after a take-over at the lease's lapse.
        assert await client.redis.get(lease) == holder.identity.encode(), (
            f"fired after {took:.2f} s, by a take-over of the lease")
        assert time.monotonic() < lapse_at
        assert took < 1.2, took
    finally:
        holder.send(signal.SIGCONT)
        for proc in (holder, other):
            await anyio.to_thread.run_sync(proc.stop)
