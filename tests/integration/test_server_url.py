"""Where a client connects without a URL: REDURABLE_URL for Python and the CLI alike;
without it, Client.connect() keeps the contract's redis://localhost:6379 and the CLI
falls back to the `redurable dev` server (sdk/client/server_url.py says why)."""

from __future__ import annotations

import subprocess

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sdk import Client
from sdk._devserver import DEFAULT_DEV_PORT, port_in_use
from sdk.client.server_url import CLI_DEFAULT_URL, CLIENT_DEFAULT_URL, cli_url, client_url
from tests.conftest import unique_prefix
from tests.integration.cli_support import ENV, ROOT, redurable

pytestmark = pytest.mark.anyio


def test_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDURABLE_URL", raising=False)
    assert client_url() == CLIENT_DEFAULT_URL == "redis://localhost:6379"
    assert cli_url() == CLI_DEFAULT_URL == f"redis://127.0.0.1:{DEFAULT_DEV_PORT}"
    monkeypatch.setenv("REDURABLE_URL", "")  # set but empty: as if unset
    assert (client_url(), cli_url()) == (CLIENT_DEFAULT_URL, CLI_DEFAULT_URL)
    monkeypatch.setenv("REDURABLE_URL", "redis://127.0.0.1:1234")
    assert client_url() == cli_url() == "redis://127.0.0.1:1234"


async def test_connect_without_a_url_uses_redurable_url(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("REDURABLE_URL", redis_url)
    prefix = unique_prefix()
    async with await Client.connect(prefix=prefix) as client:
        await client.start_workflow("Anything", id="env-url", task_queue="q")
        assert (await client.get_workflow_handle("env-url").describe()).status == "RUNNING"
        await client.redis.delete(*[k async for k in client.redis.scan_iter(f"{prefix}:*")])


def test_connect_without_anything_uses_localhost_6379(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDURABLE_URL", raising=False)
    monkeypatch.setattr("sdk.client.server_url.CLIENT_DEFAULT_URL", "redis://127.0.0.1:1")
    # Port 1 stands in for 6379 (where CI's own Redis runs): the fallback is what is used.
    with pytest.raises(RedisConnectionError, match=r"127\.0\.0\.1:1\b"):
        anyio.run(lambda: Client.connect(socket_connect_timeout=5))


def test_the_cli_without_anything_looks_for_redurable_dev() -> None:
    if port_in_use(DEFAULT_DEV_PORT):
        pytest.skip(f"a server listens on the dev port {DEFAULT_DEV_PORT}")
    done = subprocess.run(redurable("workflow", "list"), capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=30)  # fmt: skip
    assert done.returncode == 1
    assert f"cannot reach a server at {CLI_DEFAULT_URL}" in done.stderr
