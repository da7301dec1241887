"""Parent and child links where people look: `redurable workflow describe` (table and
JSON) and `show`, and the UI's workflow page (real server)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import anyio
import pytest

from sdk import Client
from tests.conftest import unique_prefix
from tests.integration.test_child_workflows import Parent, worker
from tests.ui.harness import ui_server


@pytest.fixture
def family(redis_url: str) -> Iterator[tuple[str, str]]:
    """A parent that ran a child to completion; yields (prefix, parent run id)."""
    prefix = unique_prefix()

    async def run() -> str:
        client = await Client.connect(redis_url, prefix=prefix)
        try:
            async with worker(client):
                handle = await client.start_workflow(Parent.run, "kid", 3, id="mom",
                                                     task_queue="q")
                with anyio.fail_after(15):
                    await handle.result()
            return handle.run_id or ""
        finally:
            await client.close()

    run_id = anyio.run(run)
    yield prefix, run_id

    async def clean() -> None:
        client = await Client.connect(redis_url, prefix=prefix)
        try:
            async for key in client.redis.scan_iter(match=f"{prefix}:*", count=1000):
                await client.redis.delete(key)
        finally:
            await client.close()

    anyio.run(clean)


def cli(redis_url: str, prefix: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sdk.cli.main", *args, "--redis-url", redis_url,
         "--prefix", prefix],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_describe_and_show_name_the_parent(redis_url: str, family: tuple[str, str]) -> None:
    prefix, parent_run = family
    doc = json.loads(cli(redis_url, prefix, "workflow", "describe", "kid", "-o", "json"))
    assert (doc["parent_id"], doc["parent_run_id"]) == ("mom", parent_run)
    table = cli(redis_url, prefix, "workflow", "describe", "kid")
    assert "Parent" in table and "mom" in table
    shown = cli(redis_url, prefix, "workflow", "show", "mom")
    assert "StartChildWorkflowExecutionInitiated" in shown
    assert "ChildWorkflowExecutionCompleted" in shown


def test_ui_links_parent_and_children(redis_url: str, family: tuple[str, str]) -> None:
    prefix, _ = family
    with ui_server(redis_url, prefix) as base:
        with urllib.request.urlopen(base + "/workflow?id=kid", timeout=10) as response:
            child_page = response.read().decode()
        with urllib.request.urlopen(base + "/workflow?id=mom", timeout=10) as response:
            parent_page = response.read().decode()
    assert 'data-testid="parent"' in child_page
    assert 'href="/workflow?id=mom"' in child_page
    assert 'data-testid="children"' in parent_page
    assert 'href="/workflow?id=kid"' in parent_page
    assert "Completed" in parent_page
