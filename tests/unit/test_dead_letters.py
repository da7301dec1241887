"""engine/dead_letters.py's listing orders (fakeredis): the CLI's oldest first per shard,
the web UI's newest of all shards first, and the count."""

from __future__ import annotations

import pytest

from sdk import Client

pytestmark = pytest.mark.anyio


async def test_newest_first_merges_the_shards(fake_client: Client) -> None:
    keys = fake_client.keys
    # Explicit ids: shard 1 holds the oldest and the newest, shard 0 the middle two.
    for shard, sid in [(1, "1000-0"), (0, "2000-0"), (0, "2000-1"), (1, "3000-0")]:
        await fake_client.redis.xadd(keys.dead_letters(shard), {
            "stream": keys.workflow_tasks(shard, "q"), "reason": sid}, id=sid)
    oldest_per_shard = [d.id for d in await fake_client.list_dead_letters()]
    assert oldest_per_shard == ["0/2000-0", "0/2000-1", "1/1000-0", "1/3000-0"]
    newest = await fake_client.list_dead_letters(newest_first=True)
    assert [d.id for d in newest] == ["1/3000-0", "0/2000-1", "0/2000-0", "1/1000-0"]
    top = await fake_client.list_dead_letters(limit=2, newest_first=True)
    assert [d.id for d in top] == ["1/3000-0", "0/2000-1"]
    assert [d.reason for d in top] == ["3000-0", "2000-1"]
    assert await fake_client.count_dead_letters() == 4


async def test_count_of_an_empty_namespace_is_zero(fake_client: Client) -> None:
    assert await fake_client.count_dead_letters() == 0
    assert await fake_client.list_dead_letters(newest_first=True) == []


async def test_query_requests_dead_letters_are_listed_and_counted(fake_client: Client) -> None:
    # A query request's dead letters are in its query stream's own slot; the queue
    # registry (keys.task_queues) is where the listing finds that stream.
    keys = fake_client.keys
    await fake_client.redis.sadd(keys.task_queues(), "orders", "idle")
    queries = keys.queries("orders")
    await fake_client.redis.xadd(keys.stream_dead_letters(queries), {
        "stream": queries, "reason": "query", "workflow_id": "o-1", "name": "status"},
        id="2500-0")
    await fake_client.redis.xadd(keys.dead_letters(0), {
        "stream": keys.workflow_tasks(0, "orders"), "reason": "task"}, id="2000-0")
    oldest = await fake_client.list_dead_letters()
    assert [d.id for d in oldest] == ["0/2000-0", "queries:orders/2500-0"]
    query = oldest[1]
    assert (query.kind, query.shard, query.task_queue, query.workflow_id, query.stream) == (
        "query", None, "orders", "o-1", queries)
    newest = await fake_client.list_dead_letters(newest_first=True)
    assert [d.id for d in newest] == ["queries:orders/2500-0", "0/2000-0"]
    assert [d.id for d in await fake_client.list_dead_letters(limit=1)] == ["0/2000-0"]
    assert await fake_client.count_dead_letters() == 2

    assert (await fake_client.drop_dead_letter("queries:orders/2500-0")).kind == "query"
    assert await fake_client.count_dead_letters() == 1
