"""Visibility end to end, on fakeredis and a real server (the `client` fixture): search
attributes set at start and by workflow.upsert_search_attributes, shown in describe and
workflow.info(), and list_workflows / count_workflows with Temporal's query subset,
answered from the per-shard indexes (docs/visibility.md)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from engine.keys import Keys
from sdk import (
    Client,
    InvalidArgumentError,
    InvalidQueryError,
    Replayer,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowExecutionStatus,
    workflow,
)
from sdk.testing import running_worker

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

AMOUNT = SearchAttributeKey.for_int("Amount")
STAGE = SearchAttributeKey.for_keyword("Stage")
DUE = SearchAttributeKey.for_datetime("Due")
NOTE = SearchAttributeKey.for_text("Note")
TAGS = SearchAttributeKey.for_keyword_list("Tags")
BASE = datetime(2025, 1, 1, tzinfo=UTC)


@workflow.defn
class Tagger:
    """Upserts its attributes as it goes: on start, then when told to ship."""

    def __init__(self) -> None:
        self.ship = False

    @workflow.signal
    def shipped(self) -> None:
        self.ship = True

    @workflow.run
    async def run(self) -> dict[str, Any]:
        workflow.upsert_search_attributes({"Stage": "packing", "Amount": 10})
        await workflow.wait_condition(lambda: self.ship)
        workflow.upsert_search_attributes([STAGE.value_set("shipped"), AMOUNT.value_unset()])
        return dict(workflow.info().search_attributes)


@workflow.defn
class Quick:
    @workflow.run
    async def run(self) -> str:
        return str(workflow.info().search_attributes.get("CustomerId", ""))


@workflow.defn
class Chain:
    """Run 1 upserts and continues as new; run 2 reports what it inherited."""

    @workflow.run
    async def run(self, run: int) -> dict[str, Any]:
        if run == 1:
            workflow.upsert_search_attributes({"Round": 1})
            workflow.continue_as_new(2)
        return dict(workflow.info().search_attributes)


async def ids(client: Client, query: str, **options: Any) -> list[str]:
    return [row.id async for row in client.list_workflows(query, **options)]


async def count(client: Client, query: str | None = None) -> int:
    return (await client.count_workflows(query)).count


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.05)


async def start_orders(client: Client, n: int) -> None:
    """order-0..n-1: Amount i*10, Due BASE + i days, Customer c-(i % 3), Tags."""
    for i in range(n):
        await client.start_workflow(
            "Order", id=f"order-{i}", task_queue="nobody",
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(AMOUNT, i * 10),
                SearchAttributePair(DUE, BASE + timedelta(days=i)),
                SearchAttributePair(SearchAttributeKey.for_keyword("Customer"), f"c-{i % 3}"),
                SearchAttributePair(TAGS, ["even" if i % 2 == 0 else "odd", "all"]),
                SearchAttributePair(NOTE, f"Order number {i} for the shop"),
            ]),
        )
        await anyio.sleep(0.002)  # distinct start times, so ORDER BY is checkable


async def test_attributes_at_start_show_in_describe_and_list(client: Client) -> None:
    handle = await client.start_workflow(
        "Order", id="o-1", task_queue="nobody",
        search_attributes={"CustomerId": "c-1", "Amount": 5, "Vip": True,
                           "Score": 2.5, "Due": BASE, "Tags": ["a", "b"]})
    described = await handle.describe()
    assert described.search_attributes == {
        "CustomerId": "c-1", "Amount": 5, "Vip": True, "Score": 2.5, "Due": BASE,
        "Tags": ["a", "b"]}
    assert described.typed_search_attributes[AMOUNT] == 5
    assert described.typed_search_attributes.get(STAGE) is None
    [row] = [r async for r in client.list_workflows("CustomerId = 'c-1'")]
    assert row.id == "o-1" and row.search_attributes["Tags"] == ["a", "b"]
    assert await ids(client, "Vip = true AND Score > 2 AND Tags = 'b'") == ["o-1"]
    assert await ids(client, "Vip = false") == []
    assert await count(client, "WorkflowType = 'Order' AND ExecutionStatus = 'Running'") == 1


async def test_ranges_over_int_and_datetime_and_order_by(client: Client) -> None:
    await start_orders(client, 12)
    assert await ids(client, "Amount >= 50 AND Amount < 80 ORDER BY StartTime ASC") == [
        "order-5", "order-6", "order-7"]
    assert await ids(client, "Amount BETWEEN 20 AND 40") == ["order-4", "order-3", "order-2"]
    assert await ids(client, "Amount NOT BETWEEN 10 AND 100 ORDER BY StartTime ASC") == [
        "order-0", "order-11"]
    assert await ids(client, "Due > '2025-01-10T00:00:00Z'") == ["order-11", "order-10"]
    assert await ids(client, "Due <= '2025-01-02' ORDER BY StartTime ASC") == [
        "order-0", "order-1"]
    assert await ids(client, "Amount IN (0, 30, 999) ORDER BY StartTime ASC") == [
        "order-0", "order-3"]
    assert await count(client, "Amount != 30") == 11
    assert await count(client, "Customer = 'c-1' OR Customer = 'c-2'") == 8
    assert await count(client, "Customer IN ('c-0') AND (Tags = 'odd' OR Amount = 0)") == 3
    assert await count(client, "Customer NOT IN ('c-0', 'c-1')") == 4
    assert await count(client, "Customer STARTS_WITH 'c-' AND Customer > 'c-1'") == 4
    assert await count(client, "Note = 'number shop'") == 12
    assert await count(client, "Note = 'order 7'") == 1
    assert await count(client, "Tags = 'all' AND Tags != 'even'") == 6
    assert await ids(client, "WorkflowId = 'order-3' OR WorkflowId IN ('order-4', 'x')") == [
        "order-4", "order-3"]
    assert await count(client, "WorkflowId STARTS_WITH 'order-1'") == 3
    newest_first = await ids(client, "")
    assert newest_first == [f"order-{i}" for i in reversed(range(12))]
    assert await ids(client, "ORDER BY StartTime ASC", limit=2) == ["order-0", "order-1"]
    assert await ids(client, "Amount > 0", page_size=5) == newest_first[:-1]
    started = (await client.get_workflow_handle("order-6").describe()).start_time
    assert started is not None
    assert await count(client, f"StartTime >= '{started.isoformat()}'") == 6


async def test_upserts_change_index_membership_and_replay(client: Client) -> None:
    async with running_worker(client, task_queue="tq", workflows=[Tagger]):
        handle = await client.start_workflow(Tagger.run, id="t-1", task_queue="tq",
                                             search_attributes={"Region": "eu"})

        async def packing() -> bool:
            return await ids(client, "Stage = 'packing'") == ["t-1"]

        await eventually(packing)
        assert await ids(client, "Amount = 10 AND Region = 'eu'") == ["t-1"]
        await handle.signal(Tagger.shipped)
        assert await handle.result() == {"Region": "eu", "Stage": "shipped"}
    assert await ids(client, "Stage = 'packing'") == []
    assert await ids(client, "Amount = 10") == []
    assert await ids(client, "Stage = 'shipped' AND ExecutionStatus = 'Completed'") == ["t-1"]
    assert (await handle.describe()).search_attributes == {"Region": "eu", "Stage": "shipped"}
    history = await handle.fetch_history()
    upserts = [e for e in history.events if e.type == "UpsertWorkflowSearchAttributes"]
    assert [e.attributes["search_attributes"] for e in upserts] == [
        {"Stage": ["KEYWORD", "packing"], "Amount": ["INT", "10"]},
        {"Stage": ["KEYWORD", "shipped"], "Amount": None}]
    await Replayer(workflows=[Tagger]).replay_workflow(history)


async def test_close_time_and_status(client: Client) -> None:
    async with running_worker(client, task_queue="tq", workflows=[Quick]):
        for i in range(3):
            result = await client.execute_workflow(Quick.run, id=f"q-{i}", task_queue="tq",
                                                   search_attributes={"CustomerId": f"c-{i}"})
            assert result == f"c-{i}"
    await client.start_workflow("Order", id="open", task_queue="nobody",
                                search_attributes={"CustomerId": "c-9"})
    assert await count(client, "ExecutionStatus = 'Completed'") == 3
    assert await count(client, "ExecutionStatus != 'COMPLETED'") == 1
    assert await ids(client, "CloseTime > '2000-01-01' ORDER BY CloseTime ASC") == [
        "q-0", "q-1", "q-2"]
    rows = [r async for r in client.list_workflows("ORDER BY CloseTime DESC")]
    assert [r.id for r in rows] == ["q-2", "q-1", "q-0", "open"]  # open runs last
    assert rows[0].status is WorkflowExecutionStatus.COMPLETED


async def test_many_workflows_across_shards(client: Client) -> None:
    keys = client.keys
    await start_orders(client, 40)
    shards = {keys.shard(f"order-{i}") for i in range(40) if i % 3 == 1}
    assert len(shards) > 1
    assert sorted(await ids(client, "Customer = 'c-1'")) == sorted(
        f"order-{i}" for i in range(40) if i % 3 == 1)
    assert await count(client) == 40
    assert await count(client, "Amount > 195 AND Tags = 'even'") == 10


async def test_bad_queries_are_clear_errors(client: Client) -> None:
    await client.start_workflow("Order", id="o-1", task_queue="nobody",
                                search_attributes={"CustomerId": "c-1", "Amount": 5})
    cases = {
        "CustomerId = ": "position 13: expected a value",
        "CustomerId = 'c-1' AND": "position 22: expected a search attribute name",
        "(Amount > 1": "position 11: expected ')'",
        "Amount >> 1": "position 8: expected a value",
        "Amount = 'five'": "'Amount' is INT",
        "RunId = 'x'": "RunId cannot be queried",
        "StartTime > 'yesterday'": "StartTime takes a datetime",
        "ExecutionStatus = 'Sleeping'": "ExecutionStatus is one of",
        "CustomerId = 'x' ORDER BY Amount": "ORDER BY takes StartTime or CloseTime",
        "CustomerId = 'unclosed": "position 13: string not closed",
    }
    for query, message in cases.items():
        with pytest.raises(InvalidQueryError, match=re.escape(message)):
            await ids(client, query)
        with pytest.raises(InvalidQueryError):
            await count(client, query)
    assert await ids(client, "Nope = 'x' OR CustomerId = 'c-1'") == ["o-1"]  # not set by any
    with pytest.raises(InvalidArgumentError, match="not both"):
        await ids(client, "Amount = 5", status="RUNNING")


async def test_bad_attribute_values_fail_at_the_call(client: Client) -> None:
    bad: list[Any] = [
        {"bad name": "x"}, {"WorkflowId": "x"}, {"X": {"a": 1}}, {"X": None},
        {"X": float("nan")}, {"X": "k" * 300},
        [SearchAttributePair(AMOUNT, "five")],
    ]
    for attributes in bad:
        with pytest.raises(InvalidArgumentError):
            await client.start_workflow("Order", id="o-bad", task_queue="nobody",
                                        search_attributes=attributes)
    assert await count(client) == 0


async def test_attributes_live_in_the_shard_indexes(client: Client) -> None:
    """The key schema docs/inspect.md shows (what operators read with redis-cli)."""
    await client.start_workflow("Order", id="o-1", task_queue="nobody",
                                search_attributes={"CustomerId": "c-1", "Amount": 5})
    keys: Keys = client.keys
    shard = keys.shard("o-1")
    redis = client.redis
    assert await redis.smembers(keys.sa_types(shard)) == {b"CustomerId:KEYWORD", b"Amount:INT"}
    assert await redis.zscore(keys.sa_values(shard, "Amount", "INT"), "o-1") == 5
    assert await redis.zscore(keys.sa_value(shard, "CustomerId", "KEYWORD", "c-1"), "o-1")
    await client.get_workflow_handle("o-1").terminate("done")
    assert await redis.zscore(keys.index_close(shard), "o-1")
    # A new run of the same id takes the old run's attributes out of the indexes.
    await client.start_workflow("Order", id="o-1", task_queue="nobody",
                                search_attributes={"CustomerId": "c-2"})
    assert await redis.zscore(keys.sa_values(shard, "Amount", "INT"), "o-1") is None
    assert await redis.zscore(keys.index_close(shard), "o-1") is None
    assert await ids(client, "CustomerId = 'c-1'") == []
    assert await ids(client, "CustomerId = 'c-2'") == ["o-1"]


async def test_continue_as_new_carries_the_attributes(client: Client) -> None:
    async with running_worker(client, task_queue="tq", workflows=[Chain]):
        handle = await client.start_workflow(Chain.run, 1, id="chain", task_queue="tq",
                                             search_attributes={"Customer": "c-1"})
        assert await handle.result() == {"Customer": "c-1", "Round": 1}
    assert await ids(client, "Round = 1 AND Customer = 'c-1'") == ["chain"]
    assert await count(client, "ExecutionStatus = 'ContinuedAsNew'") == 0  # one key, one run
    assert await count(client, "ExecutionStatus = 'Completed' AND CloseTime > '2000-01-01'") == 1
