"""The CLI's start-up path as users take it: --version, the hint when no server
answers, `redurable dev` (data kept across restarts), `redurable demo` end to end, and
the compose file."""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sdk._devserver import DEFAULT_DEV_PORT, free_port, port_in_use
from tests.integration.cli_support import ENV, ROOT, Cli, assert_one_line_error, redurable


def test_version() -> None:
    done = subprocess.run(redurable("--version"), capture_output=True, text=True, env=ENV,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"redurable {importlib.metadata.version('redurable')}\n"


def test_unreachable_server_explains_how_to_start_one() -> None:
    done = subprocess.run(
        redurable("workflow", "list", "--redis-url", f"redis://127.0.0.1:{free_port()}"),
        capture_output=True, text=True, env=ENV, timeout=30,
    )  # fmt: skip
    assert_one_line_error(done, "cannot reach a server")
    if port_in_use(DEFAULT_DEV_PORT):
        pytest.skip(f"a server listens on the dev port {DEFAULT_DEV_PORT}")
    # No URL configured at all: the default is the dev server, and we say how to start it.
    done = subprocess.run(
        redurable("workflow", "list"), capture_output=True, text=True, env=ENV, timeout=30
    )
    assert_one_line_error(done, f"127.0.0.1:{DEFAULT_DEV_PORT}", "redurable dev")


def test_dev_server_keeps_data_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    cli = Cli(url, "devtest")

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            redurable("dev", "--port", str(port), "--db-dir", str(tmp_path)),
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        assert url in proc.stdout.readline()
        return proc

    proc = start()
    try:
        cli.json("workflow", "start", "Order", "--id", "kept", "-q", "orders")
        busy = subprocess.run(redurable("dev", "--port", str(port)),
                              capture_output=True, text=True, env=ENV, timeout=30)  # fmt: skip
        assert_one_line_error(busy, "already in use")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err
        assert not port_in_use(port)
        proc = start()
        assert cli.json("workflow", "describe", "kept")["status"] == "RUNNING"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=15)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_runs_end_to_end() -> None:
    """What the README's first command runs: embedded server, worker killed, carries on."""
    started = time.monotonic()
    done = subprocess.run(
        redurable("demo"), capture_output=True, text=True, env=ENV, cwd="/", timeout=110
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for needle in ("kill -9", "Started worker 2", "state Picked up", "state Delivered",
                   "Workflow result: Completed", "WorkflowExecutionCompleted",
                   "each done exactly once", "Done."):  # fmt: skip
        assert needle in out, out
    # It prints the input it sent, as the history's WorkflowExecutionStarted has it.
    assert "Order.run(3, 5.0)" in out and "input=[3, 5.0]" in out, out
    assert time.monotonic() - started < 30, "the demo must take under 30 s"


def _docker_compose_available() -> bool:
    try:
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="docker compose is not available")
def test_compose_file_is_valid() -> None:
    done = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
