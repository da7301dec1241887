"""A poller's workflow-task completions sent with its next read, in one round trip
(sdk/worker/workflow_tasks.py `_read_committing`, FunctionCaller.call_many_then,
RespPool.execute_then_blocking): their replies are applied before the read answers,
and a read that fails first leaves no task lost and no lock held."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from engine.calls import Call, FunctionCaller
from engine.durability import Durability
from engine.resp import RespPool, _Connection
from engine.store import Store
from sdk import Client, workflow
from sdk.testing import running_worker

pytestmark = pytest.mark.anyio


class _Writer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


async def test_the_first_replies_are_handed_over_before_the_blocking_one() -> None:
    reader = asyncio.StreamReader()
    writer = _Writer()
    conn = _Connection(reader, writer)  # type: ignore[arg-type]
    heard: list[list[Any]] = []
    run = asyncio.ensure_future(conn.execute_then(
        [("SET", "a", 1), ("GET", "b")], ("XREADGROUP", "BLOCK", 500), heard.append))
    await asyncio.sleep(0)
    assert len(writer.sent) == 1  # everything in one send
    assert writer.sent[0].count(b"*") == 3
    reader.feed_data(b"+OK\r\n$1\r\nx\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert heard == [[b"OK", b"x"]]
    assert not run.done()  # the read blocks on: its reply is not in yet
    reader.feed_data(b"*-1\r\n")
    assert await run is None
    assert heard == [[b"OK", b"x"]]


def _pool(
    answer: Callable[[Sequence[Sequence[Any]], Callable[[list[Any]], None]], list[Any]],
) -> RespPool:
    pool = RespPool("127.0.0.1", 1)

    async def execute_then_blocking(
        commands: Sequence[Sequence[Any]], on_replies: Callable[[list[Any]], None], *args: Any
    ) -> Any:
        on_replies(answer(commands, on_replies))
        return b"read"

    pool.execute_then_blocking = execute_then_blocking  # type: ignore[method-assign]
    return pool


CALL = Call("rd_release", ["s"], ["1-0"])


async def test_a_durability_wait_follows_the_calls_and_its_reply_is_not_theirs() -> None:
    sent: list[Sequence[Sequence[Any]]] = []

    def answer(commands: Sequence[Sequence[Any]], _: object) -> list[Any]:
        sent.append(commands)
        return [1, 1]  # the call's reply, then WAIT's: one replica acknowledged

    caller = FunctionCaller(None, _pool(answer), Durability(replicas=1))  # type: ignore[arg-type]
    heard: list[list[Any]] = []
    assert await caller.call_many_then([CALL], heard.append, "XREADGROUP") == b"read"
    assert heard == [[1]]
    assert sent[0][-1][0] == "WAIT"


async def test_calls_that_found_no_function_run_again_before_their_replies_count() -> None:
    def answer(commands: Sequence[Sequence[Any]], _: object) -> list[Any]:
        return [ResponseError("ERR Function not found")]

    caller = FunctionCaller(None, _pool(answer))  # type: ignore[arg-type]
    reloaded: list[int] = []

    async def load() -> bool:
        reloaded.append(1)
        return True

    async def again(calls: Sequence[Call], replies: list[Any]) -> list[Any]:
        return [b"done"]

    caller._load_library = load  # type: ignore[method-assign]
    caller._again_where_missing = again  # type: ignore[method-assign]
    heard: list[list[Any]] = []
    assert await caller.call_many_then([CALL], heard.append, "XREADGROUP") == b"read"
    assert reloaded == [1]
    assert heard == [[b"done"]]


@workflow.defn
class Pings:
    def __init__(self) -> None:
        self.seen = 0

    @workflow.signal
    def ping(self) -> None:
        self.seen += 1

    @workflow.query
    def count(self) -> int:
        return self.seen

    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.wait_condition(lambda: self.seen >= n)
        return self.seen


async def test_completions_ride_on_the_next_read(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    carried: list[str] = []
    read_after = Store.read_group_after

    async def recorded(self: Store, calls: Sequence[Call], *args: Any) -> Any:
        carried.extend(c.function for c in calls)
        return await read_after(self, calls, *args)

    monkeypatch.setattr(Store, "read_group_after", recorded)
    async with running_worker(fake_client, task_queue="q", workflows=[Pings]):
        handle = await fake_client.start_workflow(Pings.run, 3, id="p", task_queue="q")
        with anyio.fail_after(10):
            for i in range(3):
                await handle.signal(Pings.ping)
                while await handle.query(Pings.count) <= i:  # one task per signal
                    await anyio.sleep(0.01)
            assert await handle.result() == 3
    assert carried.count("rd_wft_complete") >= 3


async def test_a_read_that_fails_before_the_replies_loses_no_task(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops with the completions sent: whether they ran is unknown. The
    tasks are retried from a fresh replay (a commit that landed makes them stale), and
    the lock is free for the next batch."""
    failures = [1, 1]
    read_after = Store.read_group_after

    async def flaky(self: Store, calls: Sequence[Call], *args: Any) -> Any:
        if failures and any(c.function == "rd_wft_complete" for c in calls):
            failures.pop()
            if len(failures) == 1:  # the calls ran, their replies were lost
                await self.call_many(calls)
            raise RedisConnectionError("connection lost")
        return await read_after(self, calls, *args)

    monkeypatch.setattr(Store, "read_group_after", flaky)
    async with running_worker(fake_client, task_queue="q", workflows=[Pings]):
        handle = await fake_client.start_workflow(Pings.run, 2, id="f", task_queue="q")
        await handle.signal(Pings.ping)
        await handle.signal(Pings.ping)
        with anyio.fail_after(20):
            assert await handle.result() == 2
    assert not failures


async def test_unstick_calls_lost_with_a_failed_read_are_sent_again(
    fake_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache let a workflow go to make room; the read that carried its rd_unstick
    (with the completions) failed. The next read carries it again: else Redis keeps
    sending the workflow's tasks to us for a full replay each."""
    client = fake_client
    failed: list[str] = []
    read_after = Store.read_group_after

    async def flaky(self: Store, calls: Sequence[Call], *args: Any) -> Any:
        if not failed and any(c.function == "rd_unstick" for c in calls):
            failed.append("once")
            raise RedisConnectionError("connection lost")
        return await read_after(self, calls, *args)

    async def owner(wf_id: str) -> bytes | None:
        raw: Any = await client.redis.hget(client.keys.workflow(wf_id), "sticky")
        return raw  # type: ignore[no-any-return]

    monkeypatch.setattr(Store, "read_group_after", flaky)
    async with running_worker(client, task_queue="q", workflows=[Pings],
                              max_cached_workflows=1) as worker:
        one = await client.start_workflow(Pings.run, 1, id="one", task_queue="q")
        with anyio.fail_after(10):
            while await owner(one.id) is None:
                await anyio.sleep(0.01)
        two = await client.start_workflow(Pings.run, 1, id="two", task_queue="q")
        with anyio.fail_after(10):  # two's task made room: one was let go
            while not failed or await owner(one.id) is not None:
                await anyio.sleep(0.01)
        assert await owner(two.id) == worker.sticky.encode()  # type: ignore[union-attr]
        await one.signal(Pings.ping)
        await two.signal(Pings.ping)
        with anyio.fail_after(10):
            assert await one.result() == 1
            assert await two.result() == 1
