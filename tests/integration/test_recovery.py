"""Crash recovery (DESIGN.md, correctness rule 4): workers in their own processes,
killed with SIGKILL, replaced, and the workflows finish as if nothing happened.

The workers run with a 1 s liveness timeout so that claiming a dead worker's tasks
takes about a second here (5 s by default).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

from engine.keys import GROUP
from sdk import Client, WorkflowHandle
from sdk.examples.order import Order
from tests.integration.chaos_workflows import Chaos, Slow, chaos_expected
from tests.integration.worker_proc import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.slow]

LIVENESS = 1.0


class Workers:
    """Worker subprocesses of one test; every one is killed when the block ends."""

    def __init__(
        self,
        url: str,
        client: Client,
        task_queue: str,
        module: str,
        env: dict[str, str],
        log: IO[bytes],
    ) -> None:
        self.url, self.client, self.task_queue = url, client, task_queue
        self.module, self.env, self.log = module, env, log
        self.all: list[WorkerProcess] = []
        self.max_deliveries = 5
        self.liveness = LIVENESS

    def start(self, max_activities: int = 100) -> WorkerProcess:
        proc = WorkerProcess(
            self.url,
            self.client.keys.prefix,
            self.task_queue,
            self.module,
            liveness=self.liveness,
            max_activities=max_activities,
            max_deliveries=self.max_deliveries,
            env=self.env,
            log=self.log,
        )
        self.all.append(proc)
        return proc.start()

    async def spawn(self, max_activities: int = 100) -> WorkerProcess:
        """Start one and wait until it polls the task queue."""
        proc = self.start(max_activities)
        await anyio.to_thread.run_sync(proc.wait_ready)
        return proc

    def kill_all(self) -> None:
        for proc in self.all:
            proc.kill()


@asynccontextmanager
async def workers(
    url: str, client: Client, task_queue: str, module: str, tmp: Path, **env: str
) -> AsyncIterator[Workers]:
    log_path = tmp / "workers.log"
    with log_path.open("ab") as log:
        pool = Workers(url, client, task_queue, module, env, log)
        try:
            yield pool
        except BaseException:
            # The workers' own logs explain most failures here.
            print(log_path.read_text(errors="replace")[-20000:])
            raise
        finally:
            pool.kill_all()


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], timeout: float = 20.0
) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.05)
    del what  # only named for the reader of a failure's traceback


async def is_idle(handle: WorkflowHandle) -> bool:
    """Nothing to do until a signal or timer: no workflow task, no activity."""
    state = await handle.client.store.get_state(handle.id)
    return state.get("wft") == b"none" and not any(k.startswith("act:") for k in state)


def ledger_lines(path: Path, workflow_id: str) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] == workflow_id]


async def assert_contiguous_history(handle: WorkflowHandle) -> list[str]:
    events = [e async for e in handle.fetch_history()]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    return [e.type for e in events]


async def pending_for(client: Client, consumer: str, streams: list[str]) -> int:
    pipe = client.redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xpending_range(stream, GROUP, "-", "+", 100, consumername=consumer)
    return sum(len(rows) for rows in await pipe.execute())


@asynccontextmanager
async def stuck_report(
    client: Client, handles: list[WorkflowHandle], streams: list[str]
) -> AsyncIterator[None]:
    """On a timeout, print what the workflows that did not close are waiting for."""
    try:
        yield
    except TimeoutError:
        with anyio.CancelScope(shield=True):
            for h in handles:
                state = await client.store.get_state(h.id)
                if state.get("status") == b"RUNNING":
                    tail = [(e.event_id, e.type) async for e in h.fetch_history()][-4:]
                    brief = {k: v[:80] for k, v in state.items() if k not in ("result",)}
                    print("STUCK", h.id, brief, tail)
            pipe = client.redis.pipeline(transaction=False)
            for stream in streams:
                pipe.xpending_range(stream, GROUP, "-", "+", 100)
            for stream, rows in zip(streams, await pipe.execute(), strict=True):
                for row in rows:
                    print("PENDING", stream, row)
            for shard in range(client.keys.shards):
                dead: Any = await client.redis.xrange(client.keys.dead_letters(shard))
                for sid, fields in dead:
                    print("DEAD LETTER", sid, fields)
        raise


@pytest.mark.timeout(90)
async def test_order_survives_kill_9_at_every_wait(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    client = real_client
    ledger = tmp_path / "ledger.txt"
    wait = 8.0  # each signal wait and the rating delay; covers a restart with margin
    wf_id = "order-kill-9"
    async with workers(
        redis_url,
        client,
        "orders",
        "sdk.examples.order",
        tmp_path,
        REDURABLE_ORDER_LEDGER=str(ledger),
    ) as pool:
        w1 = await pool.spawn()
        handle = await client.start_workflow(Order.run, 3, wait, id=wf_id, task_queue="orders")

        async def paid() -> bool:
            status = await handle.query(Order.get_status)
            return bool(status["state"] == "Paid") and await is_idle(handle)

        await eventually("charged, waiting for picked_up", paid)
        w1.kill()  # 1: idle, waiting for the picked_up signal

        w2 = await pool.spawn()
        await handle.signal(Order.picked_up)

        async def picked_up() -> bool:
            status = await handle.query(Order.get_status)
            return bool(status["state"] == "Picked up") and await is_idle(handle)

        await eventually("picked up, waiting for delivered", picked_up)
        w2.kill()  # 2: idle, waiting for the delivered signal

        # 3: a worker dies right after it received the next workflow task. Frozen, it
        # cannot process the signal's task that its blocked XREADGROUP takes; killed, it
        # leaves that task pending on a dead consumer, for the next worker to claim.
        w3 = await pool.spawn()
        w3.send(signal.SIGSTOP)
        await handle.signal(Order.delivered)
        await anyio.sleep(0.2)
        keys = client.keys
        wf_stream = keys.workflow_tasks(keys.shard(wf_id), "orders")
        claimed_from_dead = await pending_for(client, w3.identity, [wf_stream]) > 0
        w3.kill()
        started = time.monotonic()
        await pool.spawn()

        async def delivered() -> bool:
            status = await handle.query(Order.get_status)
            return bool(status["state"] == "Delivered") and await is_idle(handle)

        await eventually("delivered, sleeping before the rating", delivered)
        recovered_in = time.monotonic() - started
        lines = ledger_lines(ledger, wf_id)
        assert any(line.endswith("push notification: order delivered") for line in lines)
        pool.all[-1].kill()  # 4: during the durable sleep

        await pool.spawn()
        with anyio.fail_after(wait + 20):
            assert await handle.result() == "Completed"
        status = await handle.query(Order.get_status)
        assert status["state"] == "Completed"
        assert status["product_id"] == 3
        assert status["delivered_at"] is not None

    # Every side effect exactly once: the kills all hit idle workers.
    effects = Counter(
        line.split(" ", 3)[1] + ": " + line.split(" ", 3)[3] for line in ledger_lines(ledger, wf_id)
    )
    assert effects == {
        "charge_customer: charged customer for product 3": 1,
        "send_push_notification: push notification: order picked up": 1,
        "send_push_notification: push notification: order delivered": 1,
        "send_push_notification: push notification: rate your meal": 1,
    }
    types = await assert_contiguous_history(handle)
    assert types[-1] == "WorkflowExecutionCompleted"
    assert types.count("WorkflowExecutionSignaled") == 2
    desc = await handle.describe()
    assert desc.status == "COMPLETED"
    print(f"claimed from a dead worker: {claimed_from_dead}, recovered in {recovered_in:.2f}s")
    if claimed_from_dead:
        # Claimed once idle for a liveness timeout (plus a claim round), not after the
        # 10 s workflow task timeout.
        assert recovered_in < 8.0, recovered_in


@pytest.mark.timeout(120)
async def test_many_workflows_survive_repeated_kill_9(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    client = real_client
    ledger = tmp_path / "chaos.txt"
    count, tq = 100, "chaos"
    rng = random.Random(7)
    kills = orphaned = 0
    shards = range(client.keys.shards)
    streams = [client.keys.workflow_tasks(s, tq) for s in shards]
    streams += [client.keys.activity_tasks(s, tq) for s in shards]
    async with workers(
        redis_url,
        client,
        tq,
        "tests.integration.chaos_workflows",
        tmp_path,
        REDURABLE_CHAOS_LEDGER=str(ledger),
    ) as pool:
        # A task whose holder dies five times in a row is dead-lettered as poison (rule
        # 6). Killing every ~0.75 s makes that rare but possible; not what this tests.
        pool.max_deliveries = 50
        live = [pool.start() for _ in range(3)]
        for proc in live:
            await anyio.to_thread.run_sync(proc.wait_ready)
        handles: list[WorkflowHandle] = []

        async def start_all() -> None:
            for i in range(count):
                handles.append(
                    await client.start_workflow(
                        Chaos.run, i, 0.3, 0.3, id=f"chaos-{i}", task_queue=tq
                    )
                )
                await anyio.sleep(0.04)

        async def all_closed() -> bool:
            if len(handles) < count:
                return False
            pipe = client.redis.pipeline(transaction=False)
            for h in handles:
                pipe.hget(client.keys.workflow(h.id), "status")
            return all(s != b"RUNNING" for s in await pipe.execute())

        async with anyio.create_task_group() as tg:
            tg.start_soon(start_all)
            async with stuck_report(client, handles, streams):
                with anyio.fail_after(60):
                    # Kill one worker (not always the same slot) every ~0.75 s and replace
                    # it at once, until every workflow has closed.
                    while kills < 4 or not await all_closed():
                        await anyio.sleep(rng.uniform(0.5, 1.0))
                        if await all_closed():
                            break
                        victim = rng.randrange(len(live))
                        live[victim].kill()
                        kills += 1
                        orphaned += await pending_for(client, live[victim].identity, streams)
                        live[victim] = pool.start()
                        if kills > 40:
                            break
                    with anyio.fail_after(30):
                        while not await all_closed():
                            await anyio.sleep(0.1)

    assert kills >= 4
    for i, handle in enumerate(handles):
        assert await handle.result() == chaos_expected(i), handle.id
        types = await assert_contiguous_history(handle)
        kinds = Counter(types)
        assert kinds["ActivityTaskScheduled"] == 3, (handle.id, types)
        assert kinds["ActivityTaskCompleted"] == 3, (handle.id, types)
        assert kinds["TimerStarted"] == kinds["TimerFired"] == 1, (handle.id, types)
        assert kinds["WorkflowExecutionCompleted"] == 1, (handle.id, types)
    # At least once: every activity ran to its end; the kills interrupted some runs.
    lines = [line.split() for line in ledger.read_text().splitlines()]
    done = Counter(tuple(words[:3]) for words in lines if words[4] == "done")
    assert len(done) == 3 * count
    interrupted = sum(1 for words in lines if words[4] == "start") - sum(done.values())
    # Nothing was dead-lettered.
    pipe = client.redis.pipeline(transaction=False)
    for shard in range(client.keys.shards):
        pipe.xlen(client.keys.dead_letters(shard))
    assert sum(await pipe.execute()) == 0
    print(
        f"{kills} kills orphaned {orphaned} tasks and interrupted {interrupted} "
        f"activity runs; {sum(done.values()) - 3 * count} activities completed twice"
    )


@pytest.mark.timeout(60)
async def test_busy_worker_keeps_claimed_tasks_until_it_can_run_them(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    """A dead worker's tasks claimed by a worker with no free activity slot wait in its
    backlog: there they must neither go idle (and be claimed again and again until they
    are dead-lettered as poison) nor be started twice."""
    client = real_client
    ledger = tmp_path / "slow.txt"
    count, tq = 10, "slow"
    streams = [client.keys.activity_tasks(s, tq) for s in range(client.keys.shards)]
    async with workers(
        redis_url,
        client,
        tq,
        "tests.integration.chaos_workflows",
        tmp_path,
        REDURABLE_CHAOS_LEDGER=str(ledger),
    ) as pool:
        victim = await pool.spawn()
        handles = [
            await client.start_workflow(Slow.run, 1.0, id=f"slow-{i}", task_queue=tq)
            for i in range(count)
        ]

        async def all_running_on_victim() -> bool:
            return await pending_for(client, victim.identity, streams) == count

        await eventually("every activity running on the victim", all_running_on_victim)
        victim.kill()
        await pool.spawn(max_activities=2)  # runs them 2 at a time: ~5 s
        async with stuck_report(client, handles, streams):
            with anyio.fail_after(30):
                for handle in handles:
                    assert await handle.result() == "done"
    lines = [line.split() for line in ledger.read_text().splitlines()]
    done = Counter(words[0] for words in lines if words[4] == "done")
    assert done == dict.fromkeys((h.id for h in handles), 1)
    # Started by the victim, then once more by the claimer, never twice by it.
    starts = Counter(words[0] for words in lines if words[4] == "start")
    assert max(starts.values()) <= 2, starts
    pipe = client.redis.pipeline(transaction=False)
    for shard in range(client.keys.shards):
        pipe.xlen(client.keys.dead_letters(shard))
    assert sum(await pipe.execute()) == 0


@pytest.mark.timeout(60)
async def test_a_killed_workers_tasks_are_claimed_long_before_its_liveness_timeout(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    """SIGKILL closes the dead worker's connections, so its presence subscription is gone
    at once (sdk/worker/presence.py): the others claim its activity without waiting the
    liveness timeout, here a minute."""
    client = real_client
    async with workers(
        redis_url, client, "presence", "tests.integration.chaos_workflows", tmp_path
    ) as pool:
        pool.liveness = 60.0
        w1 = await pool.spawn()
        # Long enough that w1 is still running it when w2 is up (spawning takes seconds
        # on a busy machine: with 2 s, w1 had finished before it was killed).
        handle = await client.start_workflow(Slow.run, 5.0, id="slow-1", task_queue="presence")
        keys = client.keys
        act_streams = [keys.activity_tasks(s, "presence") for s in range(keys.shards)]

        async def running_on_w1() -> bool:
            return await pending_for(client, w1.identity, act_streams) > 0

        await eventually("the activity runs on w1", running_on_w1)
        await pool.spawn()
        w1.kill()
        with anyio.fail_after(30):  # half the liveness timeout: only presence explains it
            assert await handle.result() == "done"
        assert await pending_for(client, w1.identity, act_streams) == 0

        async def w1_forgotten() -> bool:  # once its tasks were taken
            live: Any = await client.redis.zrange(client.keys.workers("presence"), 0, -1)
            return w1.identity.encode() not in live

        await eventually("w1 forgotten", w1_forgotten)


@pytest.mark.timeout(60)
async def test_a_dead_worker_is_not_forgotten_while_it_holds_tasks_we_cannot_claim(
    real_client: Client,
) -> None:
    """A worker with activities only claims a dead worker's activity tasks, never its
    workflow tasks: forgetting the dead worker then (out of the liveness zset) left its
    workflow tasks to the idle-time claim, a liveness timeout later, because the
    workflow workers no longer saw it to watch."""
    import json

    from sdk.testing import running_worker
    from tests.integration.chaos_workflows import chaos_slow

    client, tq = real_client, "mixed"
    redis, keys = client.redis, client.keys
    await client.store.ensure_groups(tq)
    wf_stream = keys.workflow_tasks(0, tq)
    await redis.xadd(wf_stream, {"workflow_id": "w", "run_id": "r", "epoch": "1"})
    await redis.xreadgroup(GROUP, "dead", {wf_stream: ">"}, count=1)
    await redis.zadd(keys.workers(tq), {"dead": int(time.time() * 1000)})
    await redis.hset(keys.worker_info(tq), "dead", json.dumps({"presence": True}))
    async with running_worker(client, task_queue=tq, activities=[chaos_slow],
                              liveness_timeout=60.0):
        await anyio.sleep(1.5)  # many presence checks: "dead" is seen dead at 0.2 s
        assert await redis.zscore(keys.workers(tq), "dead") is not None


@pytest.mark.timeout(60)
async def test_a_query_taken_by_a_killed_worker_is_answered_by_another(
    redis_url: str, real_client: Client, tmp_path: Path
) -> None:
    """The query request pending on a worker that dies is answered by another: the
    caller does not wait out its timeout. (w1 owns the workflow, so the request goes to
    w1's own query stream; when w1 dies that stream goes with it, and the client asks
    every worker once the owner's sticky timeout has passed.)"""
    from tests.integration.chaos_workflows import Waiter

    client, tq = real_client, "queries"
    async with workers(redis_url, client, tq, "tests.integration.chaos_workflows",
                       tmp_path) as pool:
        pool.liveness = 60.0
        plain_env = pool.env
        pool.env = {**plain_env, "REDURABLE_SLOW_QUERY": "1"}
        w1 = await pool.spawn()  # its query handler blocks the process
        handle = await client.start_workflow(Waiter.run, id="q-1", task_queue=tq)
        await eventually("the workflow waits", lambda: is_idle(handle))
        answers: list[Any] = []

        async def ask() -> None:
            answers.append(await handle.query("status", timeout=40))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            info: Any = await client.redis.hget(client.keys.worker_info(tq), w1.identity)
            queries = [client.keys.queries(tq),
                       client.keys.sticky_queries(tq, json.loads(info)["sticky"])]

            async def taken_by_w1() -> bool:
                return await pending_for(client, w1.identity, queries) > 0

            await eventually("w1 took the query", taken_by_w1)
            pool.env = plain_env
            await pool.spawn()
            w1.kill()
            with anyio.fail_after(20):  # half the query's timeout
                while not answers:
                    await anyio.sleep(0.05)
        assert answers == ["waiting"]
