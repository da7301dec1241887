"""Scenario 5, poison tasks: each kind ends in the dead letters with its reason, never
blocks the queue, and `requeue`/`drop` manage it afterwards. The full-size run is
`python -m scripts.chaos.poison`; the CI-size one is the last test here."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from engine.errors import DeadLetterNotFoundError, InvalidArgumentError
from engine.keys import GROUP
from scripts.chaos import checker, poison
from scripts.chaos.poison_workflows import Healthy, SignalLog, healthy_step
from sdk import Client
from sdk.testing import running_worker
from sdk.worker.task_entry import TaskEntry

pytestmark = [pytest.mark.anyio, pytest.mark.chaos]

Q = "q"


async def wait_dead_letters(client: Client, count: int, timeout: float = 15) -> list[Any]:
    with anyio.fail_after(timeout):
        while len(letters := await client.list_dead_letters()) < count:
            await anyio.sleep(0.02)
    return letters


async def check_healthy(client: Client, n: int) -> None:
    """A healthy workflow still runs through the same queue, and its history is sound."""
    handle = await client.start_workflow(Healthy.run, n, id=f"healthy-{n}", task_queue=Q)
    with anyio.fail_after(15):
        assert await handle.result() == n + 1
    verdict = await checker.check(client.redis, client.keys, client.codec,
                                  {f"healthy-{n}": n + 1})
    assert verdict.ok, verdict.details()


async def test_unregistered_type_is_dead_lettered_then_requeued(client: Client) -> None:
    """A workflow type no worker has fails its workflow task max_deliveries times, then
    leaves the queue with the reason; the run stays RUNNING and still takes signals.
    Requeued once a worker has the type, it runs and sees what arrived meanwhile."""
    async with running_worker(client, task_queue=Q, workflows=[Healthy],
                              activities=[healthy_step], max_deliveries=2):
        handle = await client.start_workflow("SignalLog", 1, id="wf-unknown", task_queue=Q)
        [letter] = await wait_dead_letters(client, 1)
        await check_healthy(client, 1)
        await handle.signal("add", 7)  # appended to history, schedules no task
        await anyio.sleep(0.3)
        assert await client.list_dead_letters() == [letter]
    assert letter.kind == "workflow"
    assert letter.workflow_id == "wf-unknown"
    assert letter.task_queue == Q
    assert letter.deliveries == 2
    assert "workflow type 'SignalLog' is not registered" in letter.reason
    assert "failed 2 times" in letter.reason
    info = await handle.describe()
    assert info.status == "RUNNING"
    assert info.last_workflow_task_failure is not None
    assert "not registered" in info.last_workflow_task_failure["message"]

    async with running_worker(client, task_queue=Q, workflows=[SignalLog]):
        await client.requeue_dead_letter(letter.id)
        with anyio.fail_after(15):
            assert await handle.result() == [7]
    assert await client.list_dead_letters() == []
    with pytest.raises(DeadLetterNotFoundError):
        await client.requeue_dead_letter(letter.id)


async def test_undecodable_input_is_dead_lettered_then_dropped(client: Client) -> None:
    bad = Client(client.redis, prefix=client.keys.prefix, shards=client.keys.shards,
                 codec=poison.GarbageCodec())
    async with running_worker(client, task_queue=Q, workflows=[Healthy],
                              activities=[healthy_step], max_deliveries=3):
        handle = await bad.start_workflow(Healthy.run, 1, id="wf-garbage", task_queue=Q)
        [letter] = await wait_dead_letters(client, 1)
        await check_healthy(client, 2)
    assert letter.workflow_id == "wf-garbage"
    assert letter.deliveries == 3
    assert "payload" in letter.reason.lower()
    dropped = await client.drop_dead_letter(letter.id)
    assert dropped.id == letter.id
    assert await client.list_dead_letters() == []
    with pytest.raises(DeadLetterNotFoundError):
        await client.drop_dead_letter(letter.id)
    await client.get_workflow_handle("wf-garbage").terminate("poison")
    assert (await handle.describe()).status == "TERMINATED"


async def test_malformed_entries_are_dead_lettered_at_once(client: Client) -> None:
    """Entries that lack a task's fields used to raise KeyError in the worker's loops
    and stop the worker; now each goes to the dead letters on its first read."""
    keys = client.keys
    await client.store.ensure_groups(Q)
    junk: list[dict[Any, Any]] = [
        {"junk": "1"},
        {"workflow_id": "m-1", "run_id": b"\xff\xfe", "epoch": "1"},
    ]
    for fields in junk:
        await client.redis.xadd(keys.workflow_tasks(0, Q), fields)
    await client.redis.xadd(keys.activity_tasks(1, Q), {
        "workflow_id": "m-2", "run_id": "r", "activity_id": "x", "attempt": "1",
        "activity_type": "healthy_step"})
    async with running_worker(client, task_queue=Q, workflows=[Healthy],
                              activities=[healthy_step]) as worker:
        letters = await wait_dead_letters(client, 3)
        await check_healthy(client, 3)
        assert worker.stats["dead_lettered"] == 3
    reasons = sorted(letter.reason for letter in letters)
    assert reasons == [
        "malformed task entry: field 'activity_id' is not a number",
        "malformed task entry: field 'run_id' is not UTF-8 text",
        "malformed task entry: no 'workflow_id' field",
    ]
    for stream in (keys.workflow_tasks(0, Q), keys.activity_tasks(1, Q)):
        assert (await client.redis.xpending(stream, GROUP))["pending"] == 0


async def test_malformed_query_request_is_dropped(client: Client) -> None:
    await client.store.ensure_groups(Q)
    stream = client.keys.queries(Q)
    await client.redis.xadd(stream, {"workflow_id": "x", "timeout_ms": "nope"})
    await client.redis.xadd(stream, {"workflow_id": "x", "timeout_ms": "60000"})  # no reply
    async with running_worker(client, task_queue=Q, workflows=[Healthy],
                              activities=[healthy_step]):
        with anyio.fail_after(10):
            while await client.redis.xlen(stream):
                await anyio.sleep(0.02)
        await check_healthy(client, 4)


async def test_dead_letter_ids_are_checked(client: Client) -> None:
    for bad_id in ("", "nonsense", "1-2", "0/abc", "x/1-0"):
        with pytest.raises(InvalidArgumentError, match="is not <shard>/<entry id>"):
            await client.requeue_dead_letter(bad_id)
    with pytest.raises(InvalidArgumentError, match="shard 99 does not exist"):
        await client.drop_dead_letter("99/1-0")
    with pytest.raises(DeadLetterNotFoundError):
        await client.drop_dead_letter("0/1-0")
    with pytest.raises(InvalidArgumentError, match="limit"):
        await client.list_dead_letters(limit=0)


async def test_requeue_refuses_a_letter_without_a_task_stream(client: Client) -> None:
    """A hand-made dead letter naming another namespace's stream is not requeued there."""
    dlq = client.keys.dead_letters(0)
    sid: Any = await client.redis.xadd(dlq, {"stream": "elsewhere:tq:x:wf", "reason": "r",
                                        "workflow_id": "w"})
    with pytest.raises(InvalidArgumentError, match="names no task stream"):
        await client.requeue_dead_letter(f"0/{sid.decode()}")


@pytest.mark.integration
@pytest.mark.slow
# Its own waits are bounded (drain 60 s, then up to 60 s for stuck workflows) and say
# what is missing; on a loaded machine 120 s could cut them short with no such message.
@pytest.mark.timeout(300)
async def test_poison_scenario_ci_size(redis_url: str) -> None:
    """Every kind of poison at once, with worker processes that the crashing activity
    and the crashing workflow code kill: all dead-lettered with the right reason,
    healthy workflows all complete."""
    cfg = poison.PoisonConfig(healthy=30, poison=6, crashes=1, spread=3.0, drain=60.0)
    report = await poison.run(redis_url, cfg)
    print(report.line())
    assert not report.bad_reasons, report.bad_reasons
    assert report.ok, (report.line(), report.verdict.details())
    assert +report.own_dead_letters == +report.expected_dead
    assert report.expected_dead == {"crash": 1, "wfcrash": 1, "unregistered": 6,
                                    "undecodable": 6, "malformed": 6}
    assert report.worker_deaths >= cfg.max_deliveries
    # A healthy task dead-lettered with the poison (the scenario requeued it, so nothing
    # is lost) means the suspect rule let it share a worker with the poison again.
    assert report.collateral == 0, report.line()
    assert report.poisoned_ms and report.baseline_ms


async def test_eagerly_handed_entries_are_screened(client: Client) -> None:
    """An eager read (rd_wft_complete) takes the stream's next new entry, which may be a
    malformed one queued before the task just scheduled: it must be dead-lettered, not
    run (its missing fields raised KeyError in the workflow loop and killed the worker,
    until its delivery count dead-lettered it as a crash)."""
    keys = client.keys
    await client.store.ensure_groups(Q)
    stream = keys.activity_tasks(2, Q)
    async with running_worker(client, task_queue=Q, workflows=[Healthy],
                              activities=[healthy_step]) as worker:
        with anyio.fail_after(10):
            while worker._plumbing.tg is None:  # run() has opened its task group
                await anyio.sleep(0.01)
        sid: Any = await client.redis.xadd(stream, {"workflow_id": "m-eager"})
        good = TaskEntry(stream, "1-0", {
            b"workflow_id": b"w", b"run_id": b"r", b"activity_id": b"1", b"attempt": b"1",
            b"activity_type": b"healthy_step"})
        bad = TaskEntry(stream, sid.decode(), {b"workflow_id": b"m-eager"})
        assert worker._plumbing.screened([bad, good]) == [good]
        [letter] = await wait_dead_letters(client, 1)
        await check_healthy(client, 5)
    assert letter.workflow_id == "m-eager"
    assert letter.reason == "malformed task entry: no 'run_id' field"
