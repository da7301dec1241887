"""Retrying client calls through an outage (engine/reconnect.py), and the request ids
that make the client's transitions safe to retry (engine/lua/10_client.lua), on
fakeredis. tests/integration/test_reconnect.py restarts a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.errors import InvalidArgumentError, ServerUnavailableError
from engine.functions import load_library
from engine.limits import REQUEST_ID_WINDOW_MS
from engine.reconnect import Reconnector, RetryConfig, is_transient
from sdk import Client
from tests.conftest import unique_prefix

pytestmark = pytest.mark.anyio

FAST = RetryConfig(initial_interval_millis=1, max_interval_millis=2,
                   max_elapsed_time_millis=200)


class Flaky:
    """An operation that fails with `errors` in turn, then answers "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_which_errors_mean_the_server_is_out_of_reach() -> None:
    assert is_transient(RedisConnectionError("connection lost"))
    assert is_transient(BusyLoadingError("LOADING"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(ReadOnlyError("You can't write against a read only replica."))
    # hiredis (engine/resp.py) keeps the code in the message
    assert is_transient(ResponseError("READONLY You can't write against a read only replica."))
    assert is_transient(ResponseError("MASTERDOWN Link with MASTER is down"))
    # a cluster slot moving or a slot without a node: nothing applied
    assert is_transient(ResponseError("TRYAGAIN the slot of {3} is moving (ERR ...)"))
    assert is_transient(ResponseError("CLUSTERDOWN The cluster is down"))
    assert is_transient(TryAgainError("the slot is moving"))
    assert is_transient(ClusterDownError("The cluster is down"))
    assert is_transient(ClusterError("TTL exhausted."))
    assert not is_transient(ResponseError("ERR unknown command"))
    # A script or function past its time limit holds the server: "not now".
    assert is_transient(ResponseError(
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."))
    # ...also as redis-py rewrites it for a command of a pipeline.
    assert is_transient(ResponseError(
        "Command # 1 (TIME) of pipeline caused error: ('BUSY Redis is busy running a script.',)"))
    assert not is_transient(ResponseError(
        "Command # 1 (X) of pipeline caused error: ('ERR unknown command',)"))
    # Final replies that start with the same letters.
    assert not is_transient(ResponseError("BUSYGROUP Consumer Group name already exists"))
    assert not is_transient(ResponseError("BUSYKEY Target key name already exists."))
    assert not is_transient(ValueError("bad"))
    # a retry loop below already gave up: never retried again above it
    assert not is_transient(ServerUnavailableError("gone", maybe_applied=True))


async def test_retry_rides_through_transient_errors_and_counts_them() -> None:
    retrier = Reconnector(FAST)
    op = Flaky(RedisConnectionError("lost"), BusyLoadingError("LOADING"))
    assert await retrier.retry("x", op) == "done"
    assert op.calls == 3
    assert (retrier.stats.interrupted, retrier.stats.recovered, retrier.stats.failed) == (1, 1, 0)
    assert await retrier.retry("x", Flaky()) == "done"
    assert retrier.stats.interrupted == 1  # an untroubled call is not counted


async def test_retry_raises_other_errors_at_once() -> None:
    retrier = Reconnector(FAST)
    op = Flaky(ResponseError("ERR wrong"))
    with pytest.raises(ResponseError, match="wrong"):
        await retrier.retry("x", op)
    assert op.calls == 1


async def test_retry_gives_up_with_one_clear_error() -> None:
    retrier = Reconnector(FAST)
    op = Flaky(*[RedisConnectionError("refused")] * 10_000)
    with pytest.raises(ServerUnavailableError, match=r"signal 's'.*0\.2 s.*refused") as err:
        await retrier.retry("signal 's'", op)
    assert err.value.maybe_applied
    assert isinstance(err.value, RedisConnectionError)  # what callers caught before
    assert retrier.stats.failed == 1


async def test_no_retry_with_zero_elapsed_time() -> None:
    retrier = Reconnector(RetryConfig(max_elapsed_time_millis=0))
    op = Flaky(RedisConnectionError("lost"))
    with pytest.raises(ServerUnavailableError):
        await retrier.retry("x", op)
    assert op.calls == 1


async def test_once_waits_for_the_server_then_runs_once() -> None:
    retrier = Reconnector(FAST)
    ready = Flaky(RedisConnectionError("refused"))
    op = Flaky()
    assert await retrier.once("x", op, ready) == "done"
    assert (ready.calls, op.calls) == (2, 1)
    lost = Flaky(RedisConnectionError("connection lost"))
    with pytest.raises(ServerUnavailableError, match="may or may not have been applied"):
        await retrier.once("requeue", lost, Flaky())
    assert lost.calls == 1


@pytest.mark.parametrize("kwargs", [
    {"max_elapsed_time_millis": -1},
    {"max_elapsed_time_millis": REQUEST_ID_WINDOW_MS},  # past what the shard remembers
    {"initial_interval_millis": 0},
    {"initial_interval_millis": 600, "max_interval_millis": 500},
    {"multiplier": 0.5},
])
def test_bad_retry_configs_are_clear_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        RetryConfig(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def fake() -> AsyncIterator[Client]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await load_library(redis)
    client = Client(redis, prefix=unique_prefix())
    try:
        yield client
    finally:
        await client.close()


async def signals(client: Client, workflow_id: str) -> int:
    handle = client.get_workflow_handle(workflow_id)
    return len([e async for e in handle.fetch_history() if e.type == "WorkflowExecutionSignaled"])


async def test_a_signal_request_id_is_applied_once(fake: Client) -> None:
    await fake.start_workflow("W", id="w", task_queue="q")
    payload = fake.codec.encode([1])
    await fake.store.signal("w", "", "go", payload, "req-1")
    await fake.store.signal("w", "", "go", payload, "req-1")  # the retry
    assert await signals(fake, "w") == 1
    await fake.store.signal("w", "", "go", payload, "req-2")
    await fake.store.signal("w", "", "go", payload)  # no request id: never deduplicated
    await fake.store.signal("w", "", "go", payload)
    assert await signals(fake, "w") == 4


async def test_a_retried_signal_succeeds_after_the_run_closed(fake: Client) -> None:
    """The first attempt landed, then the run closed: the retry answers as the first
    (ok), not WorkflowNotRunningError."""
    handle = await fake.start_workflow("W", id="w", task_queue="q")
    await fake.store.signal("w", "", "go", fake.codec.encode([]), "req-1")
    await handle.terminate()
    await fake.store.signal("w", "", "go", fake.codec.encode([]), "req-1")
    assert await signals(fake, "w") == 1


async def test_cancel_and_terminate_request_ids(fake: Client) -> None:
    await fake.start_workflow("W", id="w", task_queue="q")
    await fake.store.cancel("w", "", "why", "c-1")
    await fake.store.terminate("w", "", "end", "t-1")
    await fake.store.cancel("w", "", "why", "c-1")  # retried after the run closed: ok
    await fake.store.terminate("w", "", "end", "t-1")
    handle = fake.get_workflow_handle("w")
    types = [e.type async for e in handle.fetch_history()]
    assert types == ["WorkflowExecutionStarted", "WorkflowExecutionCancelRequested",
                     "WorkflowExecutionTerminated"]


async def test_request_ids_live_in_the_workflows_shard(fake: Client) -> None:
    await fake.start_workflow("W", id="w", task_queue="q")
    await fake.store.signal("w", "", "go", fake.codec.encode([]), "req-9")
    key = fake.keys.requests(fake.keys.shard("w"))
    assert key == f"{fake.keys.shard_prefix(fake.keys.shard('w'))}requests"
    members = await fake.redis.zrange(key, 0, -1)
    assert set(members) == {b"req-9", (await fake.store.get_state("w"))["run_id"]}


async def test_a_start_retried_after_a_lost_queue_registration_registers_it(
    fake: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start's second write (the task queue's registry) failed before reaching the
    server: the retried start is deduplicated and registers the queue all the same."""
    sadd = fake.redis.sadd
    failures = [RedisConnectionError("connection lost")]

    async def flaky_sadd(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return await sadd(*args)

    monkeypatch.setattr(fake.redis, "sadd", flaky_sadd)
    fake.retrier = Reconnector(FAST)
    handle = await fake.start_workflow("W", id="w", task_queue="fresh")
    assert await fake.redis.smembers(fake.keys.task_queues()) == {b"fresh"}
    assert (await handle.describe()).run_id == handle.run_id
    assert fake.connection_stats.recovered == 1
