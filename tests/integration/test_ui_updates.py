"""The UI's update action (Actions tab) and how updates show in the history and the
timeline, over plain HTTP against a worker process."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
import redis

from engine.keys import Keys
from sdk import Client
from tests.integration.test_ui_pages import get, post, ui
from tests.integration.worker_proc import WorkerProcess

pytestmark = [pytest.mark.integration]
__all__ = ["ui"]  # the fixture, used by name


@pytest.fixture
def counter_worker(redis_url: str, ui: tuple[str, redis.Redis, Keys]) -> Iterator[None]:
    _, _, keys = ui
    proc = WorkerProcess(redis_url, keys.prefix, "uq", "tests.integration.update_workflows")
    proc.start()
    try:
        proc.wait_ready()
        yield
    finally:
        proc.kill()


@pytest.mark.timeout(90)
def test_update_action_and_its_events(
    ui: tuple[str, redis.Redis, Keys], redis_url: str, counter_worker: None
) -> None:
    base, _, keys = ui

    async def start() -> None:
        async with await Client.connect(redis_url, prefix=keys.prefix) as client:
            await client.start_workflow("Counter", id="ui-count", task_queue="uq")

    anyio.run(start)
    with urllib.request.urlopen(base + "/workflow?id=ui-count&tab=actions", timeout=10) as r:
        cookie = r.headers["set-cookie"].split(";")[0]
        page = r.read().decode()
    assert 'action="/workflow/update"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    ours = {"cookie": cookie, "origin": base}
    form = {"id": "ui-count", "name": "add", "args": "[5]", "update_id": "ui-1",
            "csrf_token": token[1]}
    status, location = post(base, "/workflow/update", form, ours)
    assert status == 303
    assert parse_qs(urlsplit(location).query)["notice"] == ["update add (ui-1) returned 5"]
    status, location = post(base, "/workflow/update", {**form, "name": "nope", "update_id": ""},
                            ours)
    [notice] = parse_qs(urlsplit(location).query)["notice"]
    assert notice.startswith("update nope failed: update handler for 'nope' expected")
    code, history, _ = get(base + "/workflow?id=ui-count&tab=history")
    assert code == 200
    assert "WorkflowExecutionUpdateAccepted" in history
    assert "WorkflowExecutionUpdateCompleted" in history
    code, overview, _ = get(base + "/workflow?id=ui-count")
    assert code == 200
    assert "update add" in overview  # the timeline's bar
