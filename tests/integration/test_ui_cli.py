"""`redurable ui` as users run it: it serves the namespace, says how to install its
extra when that is missing, and fails in one line when its port is taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import anyio
import pytest

from sdk import Client
from sdk._devserver import free_port
from sdk.cli.main import main
from sdk.cli.ui import INSTALL_HINT
from tests.conftest import sync_redis, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k not in ("REDURABLE_URL", "REDURABLE_PREFIX")}


def ui_command(url: str, prefix: str, port: int) -> list[str]:
    return [sys.executable, "-m", "sdk.cli.main", "ui", "--port", str(port),
            "--redis-url", url, "--prefix", prefix]


# uvicorn raises the signal it stopped on again once it is done: that cancelled the
# closing of a cluster client (exit status 130), and a SIGTERM killed the process
# (sdk/ui/server.py serve_until_stopped).
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serves_the_namespace_until_interrupted(
    redis_url: str, stop_signal: signal.Signals
) -> None:
    prefix = unique_prefix()

    async def start() -> None:
        async with await Client.connect(redis_url, prefix=prefix) as client:
            await client.start_workflow("Anything", id="cli-ui-wf", task_queue="q")

    anyio.run(start)
    port = free_port()
    proc = subprocess.Popen(ui_command(redis_url, prefix, port), cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in banner
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/workflows", timeout=5) as r:
                    page = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert "cli-ui-wf" in page
        assert f"namespace <b>{prefix}</b>" in page
    finally:
        proc.send_signal(stop_signal)
        _, err = proc.communicate(timeout=15)
        with sync_redis(redis_url) as r:
            for key in r.scan_iter(match=f"{prefix}:*", count=1000):
                r.delete(key)
    assert proc.returncode == 0, err


def test_a_taken_port_is_one_line(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(ui_command(redis_url, "tuiport", port), cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (pick another --port)")


def test_without_the_extra_it_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sdk.ui.server", None)  # as if starlette were missing
    with pytest.raises(SystemExit) as exit_info:
        main(["ui"])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {INSTALL_HINT}")
