"""Scenario 4, duplicate delivery: the same task forced onto two workers at once (the
second takes it with XCLAIM, as a worker does that thinks the first one dead) and both
finish it. Fencing (DESIGN.md rule 2) must let exactly one result land, for workflow
tasks and for activity tasks; the workflow then completes right (shared checker).

The two "workers" here are two consumers driven through the engine's own calls
(engine/store.py), so the interleaving is exact: both hold the task, both started it,
both commit in one pipeline round trip (the server runs one commit, then the other).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from engine.keys import GROUP
from engine.machine import LOGIC_FLAGS
from scripts.chaos import checker
from scripts.chaos.workflows import Storm, storm_expected, storm_step
from sdk import Client, Worker
from sdk._definitions import workflow_definition
from sdk.worker.workflow_runner import new_machine

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.chaos]

TQ = "dup"


async def _take_twice(client: Client, stream: str) -> tuple[str, dict[bytes, bytes]]:
    """Deliver the stream's next entry to consumer A, then force it onto B (XCLAIM)."""
    redis = client.redis
    reply: Any = await redis.xreadgroup(GROUP, "A", {stream: ">"}, count=1)
    assert reply, f"no task in {stream}"
    msg_id, fields = reply[0][1][0]
    claimed: Any = await redis.xclaim(stream, GROUP, "B", 0, [msg_id])
    assert claimed and claimed[0][0] == msg_id
    return msg_id.decode(), fields


async def _run_rest(client: Client, wf_id: str, n: int) -> None:
    worker = Worker(client, task_queue=TQ, workflows=[Storm], activities=[storm_step],
                    liveness_timeout=1.0, handle_signals=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(20):
            assert await client.get_workflow_handle(wf_id).result() == storm_expected(n)
        worker.shutdown()


def _history_types(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[bytes]:
    return [fields[b"type"] for _, fields in entries]


@pytest.mark.parametrize("both_started", [True, False], ids=["both-started", "one-started"])
@pytest.mark.timeout(40)
async def test_workflow_task_on_two_workers_commits_once(
    real_client: Client, both_started: bool
) -> None:
    client, store, keys = real_client, real_client.store, real_client.keys
    wf_id, n = "dup-wft", 4
    await store.ensure_groups(TQ)
    handle = await client.start_workflow(Storm.run, n, 0.01, 0.05, id=wf_id, task_queue=TQ)
    assert handle.run_id is not None
    stream = keys.workflow_tasks(keys.shard(wf_id), TQ)
    msg_id, fields = await _take_twice(client, stream)
    epoch = fields[b"epoch"].decode()

    async def start(worker: str) -> Any:
        call = store.wft_start_call(wf_id, handle.run_id or "", epoch, msg_id, stream, None,
                                    10_000)
        return store.parse_wft_start(await store.call(call))

    async def completion(worker: str, started: Any) -> Any:
        machine = new_machine(workflow_definition(Storm), wf_id, handle.run_id or "", TQ,
                              client.codec)
        commands = machine.activate([e for _, e in started.entries], started.now_ms)
        return store.wft_complete_call(wf_id, handle.run_id or "", epoch, started.token,
                                       msg_id, stream, worker, machine.now_ms, LOGIC_FLAGS,
                                       commands)

    started_a = await start("A")
    assert started_a is not None
    calls = [await completion("A", started_a)]
    if both_started:
        started_b = await start("B")  # B restarts the task: A's token is now stale
        assert started_b is not None
        calls.append(await completion("B", started_b))
    else:
        calls.append(await completion("B", started_a))  # B commits with A's token
    replies = await store.call_many(calls)
    outcomes = [store.parse_wft_complete(r) for r in replies]
    landed = [o for o in outcomes if not isinstance(o, str)]
    assert len(landed) == 1, outcomes
    assert [o for o in outcomes if isinstance(o, str)] == ["stale"], outcomes
    history: Any = await client.redis.xrange(keys.history(wf_id))
    types = _history_types(history)
    assert types.count(b"WorkflowTaskCompleted") == 1, types
    assert types.count(b"ActivityTaskScheduled") == 1, types
    pending: Any = await client.redis.xpending(stream, GROUP)
    assert pending["pending"] == 0  # acknowledged: nobody will run it a third time

    await _run_rest(client, wf_id, n)
    verdict = await checker.check(client.redis, keys, client.codec, {wf_id: storm_expected(n)})
    assert verdict.ok, verdict.details()


@pytest.mark.timeout(40)
async def test_activity_task_on_two_workers_completes_once(real_client: Client) -> None:
    client, store, keys = real_client, real_client.store, real_client.keys
    wf_id, n = "dup-act", 5
    # A worker for workflow tasks only: the activity task waits in its stream.
    wf_worker = Worker(client, task_queue=TQ, workflows=[Storm], handle_signals=False)
    handle = await client.start_workflow(Storm.run, n, 0.01, 0.05, id=wf_id, task_queue=TQ)
    stream = keys.activity_tasks(keys.shard(wf_id), TQ)
    async with anyio.create_task_group() as tg:
        tg.start_soon(wf_worker.run)
        with anyio.fail_after(10):
            while not await client.redis.xlen(stream):
                await anyio.sleep(0.02)
        wf_worker.shutdown()
    msg_id, fields = await _take_twice(client, stream)
    act_id, attempt = fields[b"activity_id"].decode(), fields[b"attempt"].decode()
    result = client.codec.encode(3 * n + 0)  # what storm_step(n, 0) returns
    calls = [
        store.act_complete_call(wf_id, handle.run_id or "", act_id, attempt, msg_id, stream,
                                result=result)
        for _ in ("A", "B")
    ]
    replies = await store.call_many(calls)
    kinds = sorted(bytes(r[0]).decode() for r in replies)
    assert kinds == ["ok", "stale"], replies
    history: Any = await client.redis.xrange(keys.history(wf_id))
    assert _history_types(history).count(b"ActivityTaskCompleted") == 1

    await _run_rest(client, wf_id, n)
    verdict = await checker.check(client.redis, keys, client.codec, {wf_id: storm_expected(n)})
    assert verdict.ok, verdict.details()
