"""What the web UI reads: filtered pages and counts (on fakeredis and a real server),
task-queue backlogs, workers and dead letters (on a real server)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from engine.errors import InvalidArgumentError
from sdk import Client, workflow
from sdk.examples.order import ACTIVITIES, Order
from sdk.testing import running_worker
from sdk.ui import queries
from sdk.ui.app import _json_args, _parse_time, url

pytestmark = pytest.mark.anyio


@workflow.defn
class Waits:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn
class Other:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


async def start_spread(client: Client, ids: list[str], kind: type = Waits) -> None:
    """Start one by one, each in a later millisecond than the one before."""
    for workflow_id in ids:
        await client.start_workflow(kind, id=workflow_id, task_queue="q")
        await anyio.sleep(0.003)


def at(cursor: tuple[int, str]) -> datetime:
    return datetime.fromtimestamp(cursor[0] / 1000, tz=UTC)


async def test_filters_by_id_prefix_type_status_and_start_time(client: Client) -> None:
    await start_spread(client, [f"a-{i}" for i in range(4)] + ["b-0", "b-1"])
    await start_spread(client, ["c-0"], Other)
    await client.get_workflow_handle("a-1").terminate("test")
    everything = await queries.list_page(client, queries.Filters())
    assert [w.id for w in everything.rows] == ["c-0", "b-1", "b-0", "a-3", "a-2", "a-1", "a-0"]
    assert everything.next_cursor is None
    prefix = await queries.list_page(client, queries.Filters(id_prefix="a-"))
    assert [w.id for w in prefix.rows] == ["a-3", "a-2", "a-1", "a-0"]
    typed = await queries.list_page(client, queries.Filters(workflow_type="Other"))
    assert [w.id for w in typed.rows] == ["c-0"]
    running = await queries.list_page(
        client, queries.Filters(status="RUNNING", workflow_type="Waits", id_prefix="a-"))
    assert [w.id for w in running.rows] == ["a-3", "a-2", "a-0"]
    rows = {w.id: w for w in everything.rows}
    window = queries.Filters(started_from=at(rows["a-2"].cursor), started_to=at(rows["b-0"].cursor))
    assert [w.id for w in (await queries.list_page(client, window)).rows] == ["b-0", "a-3", "a-2"]


async def test_pages_follow_each_other_without_gaps(client: Client) -> None:
    ids = [f"p-{i}" for i in range(7)]
    await start_spread(client, ids)
    await start_spread(client, ["x-0", "x-1"])  # interleaved ids that the filter drops
    await start_spread(client, ["p-7"])
    seen: list[str] = []
    after = None
    while True:
        page = await queries.list_page(client, queries.Filters(id_prefix="p-"), page_size=3,
                                       after=after)
        seen += [w.id for w in page.rows]
        if page.next_cursor is None:
            break
        assert len(page.rows) == 3
        after = queries.parse_cursor(queries.format_cursor(page.next_cursor))
    assert seen == [f"p-{i}" for i in reversed(range(8))]


async def test_counts_per_status(client: Client) -> None:
    await start_spread(client, ["s-0", "s-1", "s-2"])
    await client.get_workflow_handle("s-0").terminate()
    counts = await queries.status_counts(client)
    assert counts["RUNNING"] == 2
    assert counts["TERMINATED"] == 1
    assert sum(counts.values()) == 3


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgumentError, match="malformed page cursor"):
        queries.parse_cursor("12x:abc")
    assert queries.parse_cursor("12:a:b") == (12, "a:b")  # ids may hold colons
    with pytest.raises(InvalidArgumentError, match="JSON array"):
        _json_args('{"a": 1}')
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        _json_args("[1,")
    assert _json_args("  ") == []
    assert _json_args('[1, "<b>"]') == [1, "<b>"]
    with pytest.raises(InvalidArgumentError, match="not a date"):
        _parse_time("yesterday", "from")
    assert _parse_time("2026-01-02T03:04:05+00:00", "to") == datetime(2026, 1, 2, 3, 4, 5,
                                                                    tzinfo=UTC)
    assert url("/workflow", id="a&b=c/#?", tab="", x=None) == "/workflow?id=a%26b%3Dc%2F%23%3F"


async def test_queue_stats_workers_and_registered_queries(real_client: Client) -> None:
    client = real_client
    await client.start_workflow(Order.run, 1, 30.0, id="queued", task_queue="idle-q")
    stats = await queries.queue_stats(client, "idle-q")
    # Nobody polls idle-q: its one workflow task waits.
    assert stats.workflow_tasks.backlog == 1
    assert stats.workflow_tasks.pending == 0
    assert stats.workflow_tasks.oldest_waiting_ms is not None
    assert stats.workflow_tasks.oldest_waiting_ms >= 0
    assert stats.workers == []
    async with running_worker(client, task_queue="orders", workflows=[Order],
                              activities=ACTIVITIES, identity="ui-test-worker"):
        handle = await client.start_workflow(Order.run, 2, 30.0, id="served", task_queue="orders")
        with anyio.fail_after(15):
            while (await handle.query(Order.get_status))["state"] != "Paid":
                await anyio.sleep(0.05)
        stats = await queries.queue_stats(client, "orders")
        assert [w.worker_id for w in stats.workers] == ["ui-test-worker"]
        assert stats.workers[0].alive
        assert stats.workers[0].workflows == ["Order"]
        assert "charge_customer" in stats.workers[0].activities
        assert stats.workflow_tasks.backlog == 0
        assert stats.workflow_tasks.oldest_waiting_ms is None
        assert await queries.registered_queries(client, "orders", "Order") == ["get_status"]
        assert await queries.registered_queries(client, "orders", "Nope") == []
        assert await queries.workflow_types(client) == ["Order"]
    assert await queries.task_queue_names(client) == ["idle-q", "orders"]


async def test_dead_letters_of_every_shard_newest_first(real_client: Client) -> None:
    keys = real_client.keys
    # The fields rd_claim (engine/lua/50_claim.lua) writes, then the task's own.
    for shard, reason in [(0, "first"), (keys.shards - 1, "second")]:
        await real_client.redis.xadd(keys.dead_letters(shard), {
            "stream": keys.activity_tasks(shard, "q"), "message_id": "1-1", "deliveries": 6,
            "reason": reason, "workflow_id": "w", "args": b"\x92\xff\x00"})
        await anyio.sleep(0.002)
    total, letters = await queries.dead_letters(real_client)
    assert total == 2
    assert [d.letter.reason for d in letters] == ["second", "first"]
    assert letters[0].letter.deliveries == 6
    assert letters[0].letter.id.startswith(f"{keys.shards - 1}/")
    assert letters[0].fields == {"workflow_id": "w", "args": "<3 bytes>"}
    total, letters = await queries.dead_letters(real_client, limit=1)
    assert total == 2
    assert [d.letter.reason for d in letters] == ["second"]
    # The CLI's order is unchanged: oldest first, shard by shard.
    assert [d.reason for d in await real_client.list_dead_letters()] == ["first", "second"]
