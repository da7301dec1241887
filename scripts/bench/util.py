"""Small helpers shared by the benchmark modules: paths, the event loop, process memory,
and the worker subprocesses (percentiles and CPU time: scripts/bench/peers/common.py,
which the peer drivers share)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis

T = TypeVar("T")

#: Where the code runs from: a snapshot of engine/, sdk/ and scripts/ that `run` takes
#: first, so edits to the work tree during a long run cannot mix two versions.
CODE = Path(__file__).resolve().parents[2]
#: The repository: results, docs and the peers' venvs live here.
REPO = Path(os.environ.get("REDURABLE_BENCH_REPO") or CODE)
OUT = REPO / ".bench-out"
BENCH_VENV = REPO / ".bench-venv"
#: Event loop of the driver and the workers: "auto" = uvloop when it is installed, as
#: the CLI does (sdk/cli/common.run); set with `--loop` or REDURABLE_BENCH_LOOP.
LOOP_ENV = "REDURABLE_BENCH_LOOP"


def use_uvloop() -> bool:
    choice = os.environ.get(LOOP_ENV, "auto")
    if choice == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise
        return False
    return True


def loop_name() -> str:
    return "uvloop" if use_uvloop() else "asyncio"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when use_uvloop()."""
    if use_uvloop():
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class WorkerProcess:
    """One `scripts.bench.worker` subprocess (the project's venv, the repo as cwd)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        extra: Sequence[str] = (),
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        args = [
            *wrapper,
            sys.executable,
            "-m",
            "scripts.bench.worker",
            "--url",
            url,
            "--prefix",
            prefix,
            *extra,
        ]
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / "logs" / f"worker-{prefix}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop/kill)
        self.proc = subprocess.Popen(
            args,
            cwd=CODE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.pid = 0
        self.stats: dict[str, Any] = {}
        self._terminated = False

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("ready "):
                self.pid = int(line.split()[1])
                sel.close()
                return
        sel.close()
        self.kill()
        raise RuntimeError(f"benchmark worker did not start: {self._tail()}")

    def _tail(self) -> str:
        """The end of the worker's log (its stderr), for an error message: what can be
        read of it. The log is closed by then on both paths that ask (kill, stop)."""
        if not self._log.closed:
            with contextlib.suppress(OSError, ValueError):
                self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError as exc:
            return f"(its log {self.log_path} cannot be read: {exc})"

    def counters(self, timeout: float = 10.0) -> dict[str, int]:
        """Ask for the worker's client counters (SIGUSR1) and read its answer."""
        assert self.proc.stdout is not None
        os.kill(self.pid, signal.SIGUSR1)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            deadline = time.monotonic() + timeout
            while sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith("counters "):
                    result: dict[str, int] = json.loads(line[9:])
                    return result
        finally:
            sel.close()
        raise RuntimeError("the benchmark worker did not report its counters")

    def terminate(self) -> None:
        """SIGTERM once (graceful drain); a second one would kill it without its stats.
        For stopping many workers at once: terminate() each, then stop() each."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            # The worker itself, also when a profiler wraps it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid or self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM (graceful drain), then collect its `stats` line."""
        self.terminate()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, _ = self.proc.communicate()
        self._log.close()
        for line in out.splitlines():
            if line.startswith("stats "):
                self.stats = json.loads(line[6:])
        if not self.stats:
            sys.stderr.write(f"benchmark worker {self.pid} left no stats: {self._tail()}\n")
        return self.stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Its pipe too (stop's communicate closes it): a long benchmark run starts and
        # kills hundreds of workers, each left open was a file descriptor until the GC
        # found it (and a ResourceWarning).
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def start_workers(
    url: str, prefix: str, count: int, *, extra: Sequence[str] = ()
) -> list[WorkerProcess]:
    workers = [WorkerProcess(url, prefix, extra=extra) for _ in range(count)]
    try:
        for w in workers:
            w.wait_ready()
    except BaseException:
        for w in workers:
            w.kill()
        raise
    return workers


def start_sampler(command: Sequence[str], pid: int) -> subprocess.Popen[bytes]:
    """A profiler that attaches to `pid` (py-spy record ... --pid PID)."""
    return subprocess.Popen(
        [*command, "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_sampler(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT makes py-spy write its output and exit."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def redis_cpu_s(r: redis.Redis) -> float:
    """The server's CPU seconds so far (INFO cpu: user + system)."""
    cpu: Any = r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
