"""The workflow list's query over HTTP (no browser): matches in the query's order, paged;
a bad query is a 400 page that says why, with the query kept in its box."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import anyio
import redis

from engine.keys import Keys
from sdk import Client
from tests.integration.test_ui_pages import get, ui

__all__ = ["ui"]  # the fixture, used by name


def test_query_lists_pages_and_explains(ui: tuple[str, redis.Redis, Keys], redis_url: str) -> None:
    base, _, keys = ui

    async def start() -> None:
        async with await Client.connect(redis_url, prefix=keys.prefix) as client:
            for i in range(55):
                await client.start_workflow("Job", id=f"job-{i:02d}", task_queue="q",
                                            search_attributes={"Amount": i})

    anyio.run(start)
    query = "Amount >= 2 ORDER BY StartTime ASC"
    code, first, _ = get(base + "/workflows?" + urlencode({"query": query}))
    assert code == 200
    shown = re.findall(r'href="/workflow\?id=(job-\d+)"', first)
    assert shown[:3] == ["job-02", "job-03", "job-04"] and len(shown) == 50
    assert "Amount=2" in first  # the search attributes column
    older = re.search(r'<a href="([^"]+)">older »</a>', first)
    assert older is not None
    code, second, _ = get(base + html.unescape(older.group(1)))
    assert re.findall(r'href="/workflow\?id=(job-\d+)"', second) == ["job-52", "job-53", "job-54"]
    code, bad, _ = get(base + "/workflows?" + urlencode({"query": "Amount >"}))
    assert code == 400
    assert "invalid query at position 8: expected a value" in bad
    assert 'value="Amount &gt;"' in bad
