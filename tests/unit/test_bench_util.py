"""scripts/bench/util.py: the benchmark worker subprocess wrapper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench.util import WorkerProcess


def _worker(tmp_path: Path, script: str) -> WorkerProcess:
    """A WorkerProcess around a stand-in process (no Redis, no bench worker)."""
    worker = WorkerProcess.__new__(WorkerProcess)
    worker.log_path = tmp_path / "worker.log"
    worker._log = open(worker.log_path, "w")  # noqa: SIM115  (closed by stop/kill)
    worker.proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                   stderr=worker._log, text=True)
    worker.pid = 0
    worker.stats = {}
    worker._terminated = False
    return worker


def test_a_worker_that_left_no_stats_says_what_its_log_ends_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = _worker(tmp_path, "import sys; sys.stderr.write('it broke')")
    worker.proc.wait()
    assert worker.stop() == {}  # the log is closed before the tail is read
    assert "it broke" in capsys.readouterr().err


def test_the_tail_of_a_log_that_is_gone(tmp_path: Path) -> None:
    worker = _worker(tmp_path, "pass")
    worker.kill()
    assert worker.proc.stdout is not None
    worker.proc.stdout.close()
    worker.log_path.unlink()
    assert "cannot be read" in worker._tail()
