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
                                   stderr=worker._log, text=True,
                                   start_new_session=True)  # as WorkerProcess: killpg
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
    worker.log_path.unlink()
    assert "cannot be read" in worker._tail()


def test_kill_closes_the_workers_pipe(tmp_path: Path) -> None:
    """Before, kill() left proc.stdout open: one file descriptor per killed worker for
    the rest of a long benchmark run, and a ResourceWarning when the GC found it."""
    worker = _worker(tmp_path, "import time; time.sleep(60)")
    worker.kill()
    assert worker.proc.returncode is not None
    assert worker.proc.stdout is not None and worker.proc.stdout.closed
    assert worker._log.closed
    worker.kill()  # again: nothing left to do, no error


def test_a_peers_stop_closes_its_pipe() -> None:
    """scripts/bench/peers/common.py `stop`, also for a process that had already ended."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "scripts" / "bench" / "peers"))
    try:
        import common  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    for script in ("import time; time.sleep(60)", "pass"):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                text=True)
        if script == "pass":
            proc.wait()
        common.stop(proc)
        assert proc.returncode is not None
        assert proc.stdout is not None and proc.stdout.closed
