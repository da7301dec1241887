"""The worker as an async context manager (temporalio's `async with Worker(...)`), and
errors from inside `running_worker` reaching the caller unwrapped."""

from __future__ import annotations

import signal

import anyio
import pytest
from redis.exceptions import NoPermissionError

from sdk import Client, Worker, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        await workflow.sleep(0.01)
        return text


async def test_async_with_runs_the_worker_and_stops_it(client: Client) -> None:
    worker = Worker(client, task_queue="q", workflows=[Echo], handle_signals=False)
    async with worker as running:
        assert running is worker
        with anyio.fail_after(10):
            assert (
                await client.execute_workflow(Echo.run, "hi", id="echo-1", task_queue="q") == "hi"
            )
        with anyio.fail_after(10):
            while await client.redis.zscore(client.keys.workers("q"), worker.identity) is None:
                await anyio.sleep(0.01)
    # Stopped and deregistered once the block has ended.
    assert await client.redis.zscore(client.keys.workers("q"), worker.identity) is None
    with pytest.raises(RuntimeError, match="already running"):
        async with worker, worker:
            pass


async def test_under_async_with_the_worker_leaves_signals_alone(client: Client) -> None:
    """Ctrl-C in the block stays a KeyboardInterrupt for its owner (run() takes it)."""
    before = signal.getsignal(signal.SIGINT)
    async with Worker(client, task_queue="q", workflows=[Echo]) as worker:
        with anyio.fail_after(10):
            while await client.redis.zscore(client.keys.workers("q"), worker.identity) is None:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is before


async def test_an_error_in_the_block_is_not_wrapped(client: Client) -> None:
    with pytest.raises(KeyError, match="missing"):
        async with running_worker(client, task_queue="q", workflows=[Echo]):
            raise KeyError("missing")
    with pytest.raises(ZeroDivisionError):
        async with Worker(client, task_queue="q", workflows=[Echo], handle_signals=False):
            _ = 1 / 0


async def test_a_worker_that_fails_raises_when_the_block_ends(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(client, task_queue="q", workflows=[Echo], handle_signals=False)

    async def broken(*args: object) -> None:
        # Not a lost connection: the start-up would retry it (sdk/worker/startup.py).
        raise NoPermissionError("NOPERM no permissions to access one of the keys")

    monkeypatch.setattr(worker.store, "ensure_groups", broken)
    with pytest.raises(NoPermissionError, match="NOPERM"):
        async with worker:
            await anyio.sleep(0.05)
