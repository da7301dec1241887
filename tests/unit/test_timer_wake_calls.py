"""Every call that may add a timer tells when the earliest one it added falls due, so
that the timer loop wakes only for a timer before its next scan: an activity start,
a workflow task failure, a cron chain's next run, a cross-shard hand-off (engine/lua,
engine/calls.py due_in_slot), on fakeredis. The commit, the task start and an
activity completion: tests/unit/test_timer_wake.py."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import pytest

from engine import commands as cmd
from engine.calls import text_of
from engine.functions import load_library
from engine.handoff import apply_call, handoff_due_in
from engine.keys import GROUP, Keys
from engine.run_chain import CronFire, cron_next_call, cron_next_due_in
from engine.start_options import StartOptions
from engine.store import Store, act_start_due_in, wft_fail_due_in
from tests.unit.test_timer_wake import Listener, started_task

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store() -> Store:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await load_library(redis)
    store = Store(redis, Keys("p", 2))
    await store.ensure_groups("q")
    return store


def heard_by(store: Store) -> Listener:
    heard = Listener()
    store.timer_listeners.append(heard)
    return heard


async def activity_task(store: Store, workflow_id: str, options: dict[str, Any]) -> str:
    """The msg id of the first task of an activity scheduled by a new run."""
    run_id, epoch, msg, token, stream = await started_task(store, workflow_id)
    await store.call(store.wft_complete_call(
        workflow_id, run_id, epoch, token, msg, stream, "w", 0, "",
        [cmd.ScheduleActivity(1, "act", b"", "q", options)]))
    tasks = store.keys.activity_tasks(store.keys.shard(workflow_id), "q")
    read: Any = await store.redis.xreadgroup(GROUP, "w", {tasks: ">"}, count=1)
    return str(read[0][1][0][0].decode())


def act_start(store: Store, workflow_id: str, msg: str, *, complete_async: bool = False) -> Any:
    tasks = store.keys.activity_tasks(store.keys.shard(workflow_id), "q")
    return store.act_start_call(workflow_id, f"r-{workflow_id}", "1", "1", msg, tasks, "w",
                                complete_async=complete_async)


async def test_an_activity_start_tells_when_its_timeout_falls_due(store: Store) -> None:
    msg = await activity_task(store, "a", {"start_to_close_ms": 30_000, "heartbeat_ms": 20_000})
    heard = heard_by(store)
    before = time.monotonic()
    reply = await store.call(act_start(store, "a", msg))
    assert 19_000 < (act_start_due_in(reply) or 0) <= 20_000  # the heartbeat's: sooner
    (due,) = heard.dues
    assert due is not None and before + 19 < due <= time.monotonic() + 20


async def test_an_activity_start_arming_nothing_wakes_nobody(store: Store) -> None:
    msg = await activity_task(store, "a", {})
    heard = heard_by(store)
    reply = await store.call(act_start(store, "a", msg))
    assert act_start_due_in(reply) == -1
    assert heard.dues == []


async def test_an_async_completion_tells_its_timeout_once(store: Store) -> None:
    msg = await activity_task(store, "a", {"start_to_close_ms": 30_000})
    heard = heard_by(store)
    first = await store.call(act_start(store, "a", msg, complete_async=True))
    assert 29_000 < (act_start_due_in(first) or 0) <= 30_000
    # It goes out with the activity completions, whose replies may hand over a task.
    assert store.parse_eager_wft(first) is None
    # Marked started before (the attempt ran a while): its timeouts are armed already.
    again = await activity_task(store, "b", {"start_to_close_ms": 30_000})
    await store.call(act_start(store, "b", again))
    heard.dues.clear()
    second = await store.call(act_start(store, "b", again, complete_async=True))
    assert text_of(second[0]) == "ok" and act_start_due_in(second) == -1
    assert heard.dues == []


async def test_a_failed_workflow_task_tells_its_retry_backoff(store: Store) -> None:
    run_id, epoch, msg, token, stream = await started_task(store, "a")
    heard = heard_by(store)
    reply = await store.call(store.wft_fail_call("a", run_id, epoch, token, msg, stream,
                                                 {"message": "bug"}))
    assert 0 <= (wft_fail_due_in(reply) or -1) <= 10_000
    assert len(heard.dues) == 1 and heard.dues[0] is not None


async def test_a_dead_lettered_workflow_task_wakes_nobody(store: Store) -> None:
    run_id, epoch, msg, token, stream = await started_task(store, "a")
    heard = heard_by(store)
    reply = await store.call(store.wft_fail_call("a", run_id, epoch, token, msg, stream,
                                                 {"message": "poison"}, "unknown type"))
    assert text_of(reply[0]) == "dead" and wft_fail_due_in(reply) == -1
    assert heard.dues == []


async def test_a_cron_chains_next_run_tells_when_its_first_task_falls_due(
    store: Store,
) -> None:
    run_id = await store.start("c", "r-c", "Wf", "q", b"",
                               StartOptions(cron_schedule="0 0 1 1 *"))
    assert run_id == "r-c"
    # The first run waits for its first cron time: fire it by hand, then complete it.
    await store.redis.zadd(store.keys.timers(store.keys.shard("c")),
                           {b"B|r-c|0|0|c": 0}, xx=True)
    await store.fire_timers()
    _, epoch, msg, token, stream = await started_task_of(store, "c", "r-c")
    await store.call(store.wft_complete_call("c", "r-c", epoch, token, msg, stream, "w", 0, "",
                                             [cmd.CompleteWorkflow(b"")]))
    closed: Any = await store.redis.hget(store.keys.workflow("c"), "close_time")
    fire = CronFire("c", "r-c", "0 0 1 1 *", int(closed))
    heard = heard_by(store)
    reply = await store.call(cron_next_call(store.keys, fire))
    # The next 1 January at midnight: weeks or months out, past any scan.
    assert (cron_next_due_in(reply) or 0) > 60_000
    (due,) = heard.dues
    assert due is not None and due > time.monotonic() + 60
    stale = await store.call(cron_next_call(store.keys, fire))
    assert text_of(stale[0]) == "stale" and len(heard.dues) == 1


async def started_task_of(store: Store, workflow_id: str, run_id: str) -> tuple[
    str, str, str, int, str
]:
    stream = store.keys.workflow_tasks(store.keys.shard(workflow_id), "q")
    read: Any = await store.redis.xreadgroup(GROUP, "w", {stream: ">"}, count=1)
    msg_id, fields = read[0][1][0]
    msg, epoch = msg_id.decode(), fields[b"epoch"].decode()
    start = store.parse_wft_start(await store.call(
        store.wft_start_call(workflow_id, run_id, epoch, msg, stream, None, 60_000)))
    assert start is not None
    return run_id, epoch, msg, start.token, stream


def start_child_entry(options: str) -> dict[bytes, bytes]:
    fields = {"kind": "start_child", "target": "kid", "request_id": "r-p:child:1",
              "parent_id": "p", "parent_run": "r-p", "seq": "1", "run_id": "r-kid",
              "workflow_type": "Wf", "task_queue": "q", "input": "", "options": options,
              "memo": "", "policy": "TERMINATE"}
    return {k.encode(): v.encode() for k, v in fields.items()}


async def test_a_hand_off_starting_a_child_tells_its_timeout(store: Store) -> None:
    heard = heard_by(store)
    entry = start_child_entry('{"run_ms":5000}')
    reply = await store.call(apply_call(store.keys, entry))
    assert text_of(reply[1]) == "started"
    assert 4_000 < (handoff_due_in(reply) or 0) <= 5_000
    assert len(heard.dues) == 1 and heard.dues[0] is not None
    seen = await store.call(apply_call(store.keys, entry))  # applied twice: nothing new
    assert text_of(seen[1]) == "seen" and handoff_due_in(seen) == -1
    assert len(heard.dues) == 1


async def test_a_hand_off_adding_no_timer_wakes_nobody(store: Store) -> None:
    heard = heard_by(store)
    reply = await store.call(apply_call(store.keys, start_child_entry("{}")))
    assert text_of(reply[1]) == "started" and handoff_due_in(reply) == -1
    assert heard.dues == []


def test_a_reply_of_a_library_before_the_answer_is_unknown() -> None:
    assert handoff_due_in([b"ok", b"started"]) is None
    assert wft_fail_due_in([b"ok"]) is None
    assert act_start_due_in([b"ok", b"{}", b"", b"", 1]) is None
    assert cron_next_due_in([b"ok", b"r"]) is None
