"""Sticky routing at the level of the engine's calls (docs/design-notes.md "Sticky
workflows"): two "workers" A and B driven through engine/store.py, so every step is
exact. A completion that names a sticky worker makes it the workflow's owner; the next
task goes to the owner's stream; the 'K' timer hands a task the owner did not start in
time to every worker; releasing a worker's streams moves its due tasks to the shared
stream; and a stale owner's completion after a takeover is fenced."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from engine import events as ev
from engine.keys import GROUP
from engine.machine import LOGIC_FLAGS
from engine.store import Store
from sdk import Client, workflow
from sdk._definitions import workflow_definition
from sdk.worker.workflow_runner import new_machine

pytestmark = pytest.mark.anyio

TQ = "sticky"
WF = "tally-1"


@workflow.defn
class Tally:
    def __init__(self) -> None:
        self.count = 0

    @workflow.signal
    def add(self) -> None:
        self.count += 1

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.count >= 100)


class Harness:
    """The workflow's streams and the calls a worker makes, one step at a time."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.store: Store = client.store
        self.keys = client.keys
        self.run_id = run_id
        self.shard = self.keys.shard(WF)
        self.shared = self.keys.workflow_tasks(self.shard, TQ)

    def sticky(self, worker: str) -> str:
        return self.keys.sticky_tasks(self.shard, TQ, worker)

    async def read(self, consumer: str, stream: str) -> tuple[str, dict[bytes, bytes]]:
        reply: Any = await self.client.redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=1)
        assert reply and reply[0][1], f"no task on {stream}"
        msg_id, fields = reply[0][1][0]
        return msg_id.decode(), fields

    async def start(self, stream: str, msg_id: str, fields: dict[bytes, bytes]) -> Any:
        call = self.store.wft_start_call(WF, self.run_id, fields[b"epoch"].decode(), msg_id,
                                         stream, None, 60_000)
        return self.store.parse_wft_start(await self.store.call(call))

    async def commands(self) -> tuple[list[Any], int, int]:
        """The commands a fresh machine decides on the whole history, its time, and the
        next event id it saw."""
        entries = await self.store.read_history(WF)
        machine = new_machine(workflow_definition(Tally), WF, self.run_id, TQ,
                              self.client.codec)
        events = [e for _, e in entries]
        commands = machine.activate(events, events[-1].timestamp)
        return commands, machine.now_ms, events[-1].event_id + 1

    async def complete(self, stream: str, msg_id: str, fields: dict[bytes, bytes],
                       token: int | None, worker: str) -> Any:
        """A completion naming `worker` as sticky (token None: speculative)."""
        commands, now_ms, next_id = await self.commands()
        call = self.store.wft_complete_call(
            WF, self.run_id, fields[b"epoch"].decode(), token, msg_id, stream, worker, now_ms,
            LOGIC_FLAGS, commands, seen_next_event_id=next_id, sticky=worker,
            sticky_ms=60_000)
        return self.store.parse_wft_complete(await self.store.call(call))

    async def run_task(self, worker: str, stream: str) -> None:
        msg_id, fields = await self.read(worker, stream)
        started = await self.start(stream, msg_id, fields)
        assert started is not None
        outcome = await self.complete(stream, msg_id, fields, started.token, worker)
        assert not isinstance(outcome, str), outcome

    async def state(self, field: str) -> bytes | None:
        value: Any = await self.client.redis.hget(self.keys.workflow(WF), field)
        return value  # type: ignore[no-any-return]

    async def completions_by(self) -> list[str]:
        return [e.worker for _, e in await self.store.read_history(WF)
                if isinstance(e, ev.WorkflowTaskCompleted)]


async def _owned_by_a(client: Client) -> Harness:
    """Tally started, its first task run by A: A owns it."""
    for worker in ("A", "B"):
        await client.store.ensure_groups(TQ, worker)
    handle = await client.start_workflow(Tally.run, id=WF, task_queue=TQ)
    h = Harness(client, handle.run_id or "")
    await h.run_task("A", h.shared)
    assert await h.state("sticky") == b"A"
    return h


async def test_the_next_task_goes_to_the_owners_stream(client: Client) -> None:
    h = await _owned_by_a(client)
    await client.get_workflow_handle(WF).signal(Tally.add)
    assert await client.redis.xlen(h.sticky("A")) == 1
    assert await client.redis.xlen(h.shared) == 0
    assert await client.redis.xlen(h.sticky("B")) == 0
    await h.run_task("A", h.sticky("A"))
    assert await h.completions_by() == ["A", "A"]


async def test_a_task_the_owner_does_not_start_in_time_goes_to_every_worker(
    client: Client,
) -> None:
    h = await _owned_by_a(client)
    await client.redis.hset(client.keys.workflow(WF), "sticky_ms", 1)
    await client.get_workflow_handle(WF).signal(Tally.add)
    a_msg, a_fields = await h.read("A", h.sticky("A"))  # A holds it, but is too slow
    await anyio.sleep(0.05)
    await client.store.fire_timers()  # the sticky deadline
    assert await h.state("sticky") is None
    assert await client.redis.xlen(h.shared) == 1
    await h.run_task("B", h.shared)  # B takes over, and owns it now
    assert await h.state("sticky") == b"B"
    # A wakes up: its speculation is refused, and so is the normal path's start.
    assert await h.complete(h.sticky("A"), a_msg, a_fields, None, "A") == "retry"
    assert await h.start(h.sticky("A"), a_msg, a_fields) is None
    assert await h.completions_by() == ["A", "B"]


async def test_releasing_a_workers_streams_moves_its_due_tasks(client: Client) -> None:
    h = await _owned_by_a(client)
    await client.get_workflow_handle(WF).signal(Tally.add)
    assert await client.store.release_sticky(TQ, "A") == 1
    for shard in range(client.keys.shards):
        assert not await client.redis.exists(client.keys.sticky_tasks(shard, TQ, "A"))
    assert not await client.redis.exists(client.keys.sticky_queries(TQ, "A"))
    assert await h.state("sticky") is None
    await h.run_task("B", h.shared)
    # The next one follows B; nothing is routed to A's stream, which is gone.
    await client.get_workflow_handle(WF).signal(Tally.add)
    assert await client.redis.xlen(h.sticky("B")) == 1
    assert not await client.redis.exists(h.sticky("A"))


async def test_a_dead_owners_started_task_is_taken_over_and_its_commit_fenced(
    client: Client,
) -> None:
    h = await _owned_by_a(client)
    await client.get_workflow_handle(WF).signal(Tally.add)
    a_msg, a_fields = await h.read("A", h.sticky("A"))
    a_started = await h.start(h.sticky("A"), a_msg, a_fields)
    assert a_started is not None
    # A looks dead (presence): live workers release its streams, the started task too.
    assert await client.store.release_sticky(TQ, "A") == 1
    await h.run_task("B", h.shared)
    stale = await h.complete(h.sticky("A"), a_msg, a_fields, a_started.token, "A")
    assert stale == "stale"
    assert await h.completions_by() == ["A", "B"]
    assert await h.state("sticky") == b"B"


async def test_unstick_lets_go_only_of_the_callers_workflows(client: Client) -> None:
    h = await _owned_by_a(client)
    assert await client.store.call(client.store.unstick_call(WF, "B")) == 0
    assert await h.state("sticky") == b"A"
    assert await client.store.call(client.store.unstick_call(WF, "A")) == 1
    assert await h.state("sticky") is None
    await client.get_workflow_handle(WF).signal(Tally.add)
    assert await client.redis.xlen(h.shared) == 1
