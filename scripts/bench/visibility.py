"""How long visibility queries take over N workflows with search attributes.

    .venv/bin/python -m scripts.bench.visibility --url redis://127.0.0.1:6416 --workflows 10000

Starts N workflows (no worker: they stay RUNNING) in a fresh namespace with Amount (INT
0..N-1), Customer (KEYWORD, 100 values), Due (DATETIME) and Note (TEXT), then times
count_workflows and list_workflows (first 100 rows) for each query, median of 5 runs,
and deletes the namespace. Prints one line per query: matches and ms."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sdk import Client, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

QUERIES = [
    "",
    "ExecutionStatus = 'Running'",
    "Customer = 'c-7'",
    "Amount BETWEEN 1000 AND 1999",
    "Customer = 'c-7' AND Amount < 5000",
    "Due > '2025-06-01T00:00:00Z' AND Customer IN ('c-1', 'c-2')",
    "Customer != 'c-7' AND Amount < 100",
    "Note = 'urgent' AND Amount < 2000",
    "WorkflowId STARTS_WITH 'bench-99'",
]


async def main(url: str, n: int) -> None:
    prefix = f"bench-vis-{uuid.uuid4().hex[:6]}"
    async with await Client.connect(url, prefix=prefix) as client:
        base = datetime(2025, 1, 1, tzinfo=UTC)
        started = time.perf_counter()
        batch = []
        for i in range(n):
            batch.append(client.start_workflow("Order", id=f"bench-{i}", task_queue="nobody",
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(SearchAttributeKey.for_int("Amount"), i),
                    SearchAttributePair(SearchAttributeKey.for_keyword("Customer"), f"c-{i % 100}"),
                    SearchAttributePair(SearchAttributeKey.for_datetime("Due"),
                                        base + timedelta(minutes=i * 50)),
                    SearchAttributePair(SearchAttributeKey.for_text("Note"),
                                        "urgent order" if i % 10 == 0 else "order"),
                ])))
            if len(batch) == 200:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
        print(f"started {n} workflows in {time.perf_counter() - started:.1f} s "
              f"({client.keys.shards} shards)")
        try:
            for query in QUERIES:
                counts, lists = [], []
                for _ in range(5):
                    t0 = time.perf_counter()
                    total = (await client.count_workflows(query)).count
                    counts.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    rows = [r async for r in client.list_workflows(query, limit=100)]
                    lists.append(time.perf_counter() - t0)
                print(f"{query or '(all)'!r:70} matches {total:6}  count "
                      f"{statistics.median(counts) * 1000:7.1f} ms  list 100 "
                      f"{statistics.median(lists) * 1000:7.1f} ms ({len(rows)} rows)")
        finally:
            async for key in client.redis.scan_iter(match=f"{prefix}:*", count=1000):
                await client.redis.delete(key)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--workflows", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.workflows))
