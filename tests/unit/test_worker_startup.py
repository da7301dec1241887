"""A worker's start-up (consumer groups, presence subscription, first beat) rides through
the errors a running worker rides through: a server held by a script (BUSY), loading
its dataset (LOADING), a connection lost. Before, they escaped `Worker.run()` and the
worker ended, while the same errors once it ran were retried. A `shutdown()` or a
cancellation during the retries ends `run()` at once and leaves nothing registered; an
error that retrying cannot fix fails at once and says which step it was
(sdk/worker/startup.py)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from sdk import Client, Worker, workflow

pytestmark = pytest.mark.anyio

BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


def _worker(client: Client, handle_signals: bool = False) -> Worker:
    return Worker(client, task_queue="q", workflows=[Echo], handle_signals=handle_signals)


async def _registered(client: Client, worker: Worker) -> dict[str, Any]:
    """What the worker registered: its beat, its info entry, whether it holds its
    presence subscription (fakeredis counts a subscriber as long as it lives, also
    unsubscribed: see tests/chaos/test_busy_server.py for the count on a real server),
    and how many of its sticky streams exist."""
    redis, keys = client.redis, client.keys
    assert worker.sticky
    return {
        "beat": await redis.zscore(keys.workers("q"), worker.identity),
        "info": await redis.hget(keys.worker_info("q"), worker.identity),
        "presence": worker.liveness.presence.subscribed,
        "sticky": await redis.exists(*client.store.sticky_streams("q", worker.sticky)),
    }


NOTHING = {"beat": None, "info": None, "presence": False, "sticky": 0}


async def test_start_up_rides_through_transient_errors_then_runs_a_workflow(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _worker(fake_client)
    groups, beat = fake_client.store.ensure_groups, worker.liveness.beat
    errors: list[Exception] = [ResponseError(BUSY),
                               BusyLoadingError("Redis is loading the dataset in memory")]

    async def busy_groups(*args: Any) -> None:
        if len(errors) == 2:
            raise errors.pop(0)
        await groups(*args)

    async def loading_beat() -> None:
        if errors:
            raise errors.pop(0)
        await beat()

    monkeypatch.setattr(fake_client.store, "ensure_groups", busy_groups)
    monkeypatch.setattr(worker.liveness, "beat", loading_beat)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            handle = await fake_client.start_workflow(Echo.run, "hi", id="e", task_queue="q")
            with anyio.fail_after(10):
                assert await handle.result() == "hi"
            worker.shutdown()
    assert not errors
    retries = [e for e in logs if e["event"] == "worker_start_retry"]
    assert [(r["step"], r["error"][:7]) for r in retries] == [
        ("create_groups", "BUSY Re"), ("first_beat", "Redis i")]
    assert [e["event"] for e in logs].count("worker_started") == 1


@pytest.mark.parametrize("stuck", ["retrying", "hanging"])
@pytest.mark.parametrize("stop", ["shutdown", "cancel", "sigterm"])
async def test_a_stop_during_start_up_retries_ends_run_promptly_and_cleanly(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch, stuck: str, stop: str
) -> None:
    """The first beat lands but its reply is lost (a connection cut): the worker is half
    registered (subscribed, beating) when the stop comes, between two attempts or in one
    that never answers (a server that stopped responding)."""
    worker = _worker(fake_client, handle_signals=stop == "sigterm")
    beat, beats = worker.liveness.beat, [0]

    async def lost_beat() -> None:
        beats[0] += 1
        if stuck == "hanging" and beats[0] > 2:
            await anyio.sleep_forever()
        await beat()
        raise RedisConnectionError("Connection closed by server.")

    monkeypatch.setattr(worker.liveness, "beat", lost_beat)
    ended = anyio.Event()
    outcome: list[BaseException] = []

    async def run() -> None:
        try:
            await worker.run()
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            while beats[0] < 3:
                await anyio.sleep(0.005)
        registered = await _registered(fake_client, worker)
        assert registered["presence"] and registered["sticky"] > 0
        asked = time.monotonic()
        if stop == "shutdown":
            worker.shutdown()
        elif stop == "sigterm":
            # The worker's handler, not the default one: that would end the test run.
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True), anyio.fail_after(1):
            await ended.wait()
        took = time.monotonic() - asked
    assert took < 0.5
    if stop != "cancel":
        assert outcome == []  # returned: a stop is no error
    assert await _registered(fake_client, worker) == NOTHING


@pytest.mark.parametrize("error", [
    NoPermissionError("NOPERM this user has no permissions to access one of the keys"),
    # A ConnectionError to redis-py, but no retry fixes a password that was refused.
    AuthenticationError("WRONGPASS invalid username-password pair or user is disabled."),
])
async def test_an_error_that_is_not_transient_fails_start_up_at_once(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    worker = _worker(fake_client)
    attempts = [0]

    async def refused_beat() -> None:
        attempts[0] += 1
        raise error

    monkeypatch.setattr(worker.liveness, "beat", refused_beat)
    with pytest.raises(type(error)) as raised, anyio.fail_after(1):
        await worker.run()
    assert raised.value is error
    assert attempts == [1]
    assert "first heartbeat" in " ".join(getattr(error, "__notes__", []))
    assert await _registered(fake_client, worker) == NOTHING


async def test_a_task_queue_key_of_another_type_fails_start_up_at_once(
    fake_client: Client,
) -> None:
    """A key in the task queue's place that is no stream (a wrong prefix shared with
    something else): WRONGTYPE, said once with the step, not retried for ever."""
    worker = _worker(fake_client)
    await fake_client.redis.set(fake_client.keys.workflow_tasks(0, "q"), "not a stream")
    with pytest.raises(ResponseError, match="WRONGTYPE") as raised, anyio.fail_after(1):
        await worker.run()
    notes = " ".join(getattr(raised.value, "__notes__", []))
    assert "consumer groups" in notes and worker.identity in notes
    assert await _registered(fake_client, worker) == NOTHING
