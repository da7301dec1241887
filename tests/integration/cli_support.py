"""What the CLI's integration tests share: running `redurable` as users do (a
subprocess with a clean environment), a namespace per test (`cli`), the example order
worker in the background (`worker`), and the one-line error check."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sync_redis, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
#: Stdout is a pipe and COLUMNS unset: tables are as wide as their rows (sdk/cli/tables.py).
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
for _name in ("REDURABLE_URL", "REDURABLE_PREFIX", "COLUMNS"):
    ENV.pop(_name, None)


def redurable(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdk.cli.main", *args]


@dataclass
class Cli:
    url: str
    prefix: str

    def __call__(
        self, *args: str, timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this namespace; --redis-url/--prefix go after the command.
        `env`: the subprocess's whole environment (default ENV)."""
        return subprocess.run(
            redurable(*args, "--redis-url", self.url, "--prefix", self.prefix),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV if env is None else env,
            cwd=ROOT,
        )

    def json(self, *args: str, timeout: float = 30) -> Any:
        done = self(*args, "--output", "json", timeout=timeout)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_state(self, workflow_id: str, state: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self("workflow", "query", workflow_id, "get_status", "-o", "json")
            if done.returncode == 0 and json.loads(done.stdout)["result"]["state"] == state:
                return
            time.sleep(0.1)
        raise AssertionError(f"{workflow_id} never reached state {state!r}")


@pytest.fixture
def cli(redis_url: str) -> Iterator[Cli]:
    prefix = unique_prefix()
    yield Cli(redis_url, prefix)
    r = sync_redis(redis_url)
    for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        r.delete(key)
    r.close()


@contextlib.contextmanager
def cli_worker(cli: Cli, module: str, task_queue: str,
               identity: str) -> Iterator[subprocess.Popen[bytes]]:
    """`redurable worker MODULE` of `cli`'s namespace in the background, yielded once it
    polls `task_queue`; stopped after (`stop_worker`)."""
    proc = subprocess.Popen(
        redurable(
            "worker", module, "--task-queue", task_queue, "--identity", identity,
            "--log-level", "WARNING", "--redis-url", cli.url, "--prefix", cli.prefix,
        ),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    r = sync_redis(cli.url)  # a node of a cluster in .ci/run's cluster pass
    try:
        deadline = time.monotonic() + 20
        while r.zscore(f"{cli.prefix}:workers:{task_queue}", identity) is None:
            assert proc.poll() is None, "worker exited at start"
            assert time.monotonic() < deadline, "worker did not start polling"
            time.sleep(0.05)
        yield proc
    finally:
        r.close()
        stop_worker(proc)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker drains and stops), SIGKILL if it has not stopped in 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def worker(cli: Cli) -> Iterator[subprocess.Popen[bytes]]:
    """`redurable worker sdk.examples.order` in the background, polling when yielded."""
    with cli_worker(cli, "sdk.examples.order", "orders", f"test-worker-{cli.prefix}") as proc:
        yield proc
    assert proc.returncode == 0  # SIGTERM: drained and stopped cleanly


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr
