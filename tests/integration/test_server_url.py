"""One rule for where a client connects without a URL, in Python and in the CLI:
REDURABLE_URL, else redis://127.0.0.1:6390 (the server `redurable dev` starts)."""

from __future__ import annotations

import subprocess

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sdk import Client
from sdk._devserver import DEFAULT_DEV_PORT, port_in_use
from sdk.client.server_url import DEFAULT_URL, default_url
from tests.conftest import unique_prefix
from tests.integration.test_cli import ENV, ROOT, redurable

pytestmark = pytest.mark.anyio


def test_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDURABLE_URL", raising=False)
    assert default_url() == DEFAULT_URL == f"redis://127.0.0.1:{DEFAULT_DEV_PORT}"
    monkeypatch.setenv("REDURABLE_URL", "")  # set but empty: as if unset
    assert default_url() == DEFAULT_URL
    monkeypatch.setenv("REDURABLE_URL", "redis://127.0.0.1:1234")
    assert default_url() == "redis://127.0.0.1:1234"


async def test_connect_without_a_url_uses_redurable_url(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("REDURABLE_URL", redis_url)
    prefix = unique_prefix()
    async with await Client.connect(prefix=prefix) as client:
        await client.start_workflow("Anything", id="env-url", task_queue="q")
        assert (await client.get_workflow_handle("env-url").describe()).status == "RUNNING"
        await client.redis.delete(*[k async for k in client.redis.scan_iter(f"{prefix}:*")])


def test_python_and_the_cli_look_in_the_same_place(monkeypatch: pytest.MonkeyPatch) -> None:
    if port_in_use(DEFAULT_DEV_PORT):
        pytest.skip(f"a server listens on the dev port {DEFAULT_DEV_PORT}")
    monkeypatch.delenv("REDURABLE_URL", raising=False)
    with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{DEFAULT_DEV_PORT}"):
        anyio.run(lambda: Client.connect(socket_connect_timeout=5))
    done = subprocess.run(redurable("workflow", "list"), capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=30)  # fmt: skip
    assert done.returncode == 1
    assert f"cannot reach a server at {DEFAULT_URL}" in done.stderr
