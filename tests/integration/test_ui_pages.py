"""The UI's pages over plain HTTP (no browser): errors are pages with a clear message
and the right status, and what the task-queue page shows is escaped."""

from __future__ import annotations

import html
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import pytest
import redis

from engine.keys import Keys
from sdk import Client
from sdk.examples import order
from sdk.testing import running_worker
from tests.conftest import sync_redis, unique_prefix
from tests.ui.harness import ui_server


@pytest.fixture
def ui(redis_url: str) -> Iterator[tuple[str, redis.Redis, Keys]]:
    prefix = unique_prefix()
    with ui_server(redis_url, prefix) as base, sync_redis(redis_url) as r:
        yield base, r, Keys(prefix)
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(key)


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/workflow?id=nope", 404, "nope"),
        ("/workflow", 400, "missing parameter &#39;id&#39;"),
        ("/workflow?id=a&tab=secret", 400, "unknown tab"),
        ("/workflow?id=a%7Bb%7D", 400, "forbidden character"),
        ("/workflows?after=xyz", 400, "malformed page cursor"),
        ("/workflows?status=SLEEPING", 400, "unknown status"),
        ("/workflows?from=tomorrow", 400, "not a date"),
    ],
)
def test_bad_requests_are_pages_that_say_what_is_wrong(
    ui: tuple[str, redis.Redis, Keys], path: str, status: int, message: str
) -> None:
    base, _, _ = ui
    code, body, headers = get(base + path)
    assert code == status
    assert message in body
    assert "script-src 'self'" in headers["content-security-policy"]


def test_queue_page_escapes_what_it_shows(ui: tuple[str, redis.Redis, Keys]) -> None:
    base, r, keys = ui
    r.sadd(keys.task_queues(), "q")
    r.xadd(keys.workflow_tasks(0, "q"), {"workflow_id": "w"})
    r.xadd(keys.dead_letters(0), {"stream": keys.workflow_tasks(0, "q"), "message_id": "1-1",
                                  "deliveries": 7, "reason": "<script>alert(1)</script>",
                                  "workflow_id": '"><img src=x>'})
    r.zadd(keys.workers("q"), {"<b>worker</b>": 1})
    code, body, _ = get(base + "/queues")
    assert code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert" not in body
    assert "&lt;b&gt;worker&lt;/b&gt;" in body
    assert "Dead letters <span class=\"muted\">(1)</span>" in body
    assert "<img" not in body
    assert 'of &#34;&gt;&lt;img src=x&gt; back on task queue q?"' in body  # the confirm text


def test_the_list_pages_on_with_its_filters(
    ui: tuple[str, redis.Redis, Keys], redis_url: str
) -> None:
    base, _, keys = ui

    async def start() -> None:
        async with await Client.connect(redis_url, prefix=keys.prefix) as client:
            for i in range(53):
                await client.start_workflow("Job", id=f"job-{i:02d}", task_queue="q")
            await client.start_workflow("Job", id="other", task_queue="q")

    anyio.run(start)
    code, first, _ = get(base + "/workflows?id_prefix=job-&type=Job")
    assert code == 200
    assert first.count('href="/workflow?id=job-') == 50
    assert "other" not in first
    older = re.search(r'<a href="([^"]+)">older »</a>', first)
    assert older is not None
    code, second, _ = get(base + html.unescape(older.group(1)))
    assert code == 200
    shown = re.findall(r'href="/workflow\?id=(job-\d+)"', first + second)
    assert sorted(shown) == [f"job-{i:02d}" for i in range(53)]
    assert "« newest" in second
    assert "older »" not in second


def post(base: str, path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    """A form POST, redirects not followed: (status, Location or body)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        connection.request("POST", path, urlencode(form), {
            "content-type": "application/x-www-form-urlencoded", **headers})
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, response.getheader("location") or body
    finally:
        connection.close()


def test_dead_letter_actions_need_the_token_and_our_origin(
    ui: tuple[str, redis.Redis, Keys]
) -> None:
    base, r, keys = ui
    r.sadd(keys.task_queues(), "q")
    ids = []
    for shard in (0, 1):
        sid: Any = r.xadd(keys.dead_letters(shard), {
            "stream": keys.workflow_tasks(shard, "q"), "message_id": "1-0", "deliveries": 5,
            "reason": "poison", "workflow_id": f"wf-{shard}"})
        ids.append(f"{shard}/{sid.decode()}")
    first, second = ids
    with urllib.request.urlopen(base + "/queues", timeout=10) as response:
        cookie = response.headers["set-cookie"].split(";")[0]
        page = response.read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    assert page.count('action="/queues/dead-letters/requeue"') == 3  # each, and "all"
    ours = {"cookie": cookie, "origin": base}

    refused = [
        post(base, "/queues/dead-letters/requeue", {"id": first}, ours),
        post(base, "/queues/dead-letters/requeue",
             {"id": first, "csrf_token": "x" * 43}, ours),
        post(base, "/queues/dead-letters/drop", {"all": "1", "csrf_token": token[1]},
             {**ours, "origin": "http://attacker.invalid"}),
    ]
    assert [status for status, _ in refused] == [403, 403, 403]
    assert "CSRF token" in refused[0][1]
    assert r.xlen(keys.dead_letters(0)) == r.xlen(keys.dead_letters(1)) == 1

    status, location = post(base, "/queues/dead-letters/requeue",
                            {"id": first, "csrf_token": token[1]}, ours)
    assert status == 303
    assert parse_qs(urlsplit(location).query)["notice"] == [f"requeued {first}"]
    assert r.xlen(keys.dead_letters(0)) == 0
    requeued: Any = r.xrange(keys.workflow_tasks(0, "q"))
    assert requeued[0][1][b"workflow_id"] == b"wf-0"
    code, shown, _ = get(base + location)
    assert code == 200
    assert f'<p class="notice" role="status">requeued {first}</p>' in shown
    assert "Dead letters <span class=\"muted\">(1)</span>" in shown

    status, location = post(base, "/queues/dead-letters/requeue",
                            {"id": first, "csrf_token": token[1]}, ours)
    assert status == 303
    [notice] = parse_qs(urlsplit(location).query)["notice"]
    assert notice.startswith(f"requeue failed: {first}: DeadLetterNotFoundError")
    status, location = post(base, "/queues/dead-letters/drop",
                            {"all": "1", "csrf_token": token[1]}, ours)
    assert parse_qs(urlsplit(location).query)["notice"] == ["dropped 1 of 1 dead letters"]
    assert r.xlen(keys.dead_letters(1)) == 0  # `second`, the one left
    assert second not in get(base + "/queues")[1]
    status, _ = post(base, "/queues/dead-letters/explode",
                     {"id": first, "csrf_token": token[1]}, ours)
    assert status == 404


def test_overview_and_list_show_a_dead_lettered_task_and_dropped_signals(
    ui: tuple[str, redis.Redis, Keys], redis_url: str
) -> None:
    base, _, keys = ui

    async def make_them() -> None:
        client = await Client.connect(redis_url, prefix=keys.prefix)
        async with client, running_worker(client, task_queue="q", workflows=[order.Order],
                                          activities=order.ACTIVITIES, max_deliveries=2):
            dead = await client.start_workflow("NotDeployed", id="ui-dead", task_queue="q")
            noted = await client.start_workflow(order.Order.run, 3, 30.0, id="ui-noted",
                                                task_queue="q")
            await noted.signal("picked_up", "x")  # picked_up takes no argument
            with anyio.fail_after(20):
                while not ((await dead.describe()).dead_letter_id
                           and (await noted.describe()).last_signal_dropped):
                    await anyio.sleep(0.05)
            await noted.terminate("test over")

    anyio.run(make_them)
    code, page, _ = get(base + "/workflow?id=ui-dead")
    assert code == 200
    shown = html.unescape(page)
    assert "dead-lettered: workflow type 'NotDeployed' is not registered" in shown
    assert re.search(r"redurable dlq requeue 0*\d+/\d+-\d+", shown)
    code, page, _ = get(base + "/workflow?id=ui-noted")
    assert code == 200
    assert "1 argument(s) do not fit handler picked_up(self)" in html.unescape(page)
    code, page, _ = get(base + "/workflows")
    assert code == 200
    row = next(line for line in page.split("<tr>") if "ui-dead" in line)
    assert "dead-lettered" in row


def test_live_history_events_stream_on_every_deployment(
    ui: tuple[str, redis.Redis, Keys], redis_url: str
) -> None:
    # The live page's server-sent events read the history stream on a connection of
    # their own. On a cluster it was built from the client's connection pool, which a
    # cluster client has not: the stream failed (the history lives on its shard's node).
    base, _, keys = ui

    async def start() -> None:
        async with await Client.connect(redis_url, prefix=keys.prefix) as client:
            await client.start_workflow("Job", id="live-1", task_queue="q")

    anyio.run(start)
    connection = http.client.HTTPConnection(urlsplit(base).netloc, timeout=10)
    try:
        connection.request("GET", "/workflow/events?id=live-1&after=0")
        response = connection.getresponse()
        assert response.status == 200
        assert response.readline() == b"event: history\n"
        assert response.readline() == b"data: 1\n"
    finally:
        connection.close()
