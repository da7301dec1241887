"""A private `redis-server` (Debian's, 7.0) with an append-only file, for the scenarios
that crash Redis or CLIENT KILL its connections: never the shared server on 6379."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from sdk._devserver import free_port, port_in_use


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class PrivateRedis:
    """`kill()` is SIGKILL: the server gets no chance to flush anything; `start()` again
    reloads the dataset from the AOF in `workdir`."""

    def __init__(self, workdir: Path, *, appendfsync: str = "always",
                 port: int | None = None) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> PrivateRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
            "--appendfsync", self.appendfsync, "--logfile", "redis.log",
            # A torn last record (killed mid-write) is dropped at load, as by default.
            "--aof-load-truncated", "yes",
            # No rewrite: the AOF stays append-only, so a copy of it is a prefix of it.
            "--auto-aof-rewrite-percentage", "0",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; "
                                   f"see {self.workdir / 'redis.log'}")
            if port_in_use(self.port):
                return self
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not listen on port {self.port} in {timeout}s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def aof_dir(self) -> Path:
        return self.workdir / "appendonlydir"

    def snapshot(self) -> Path:
        """Copy the AOF as it is now (a prefix of what comes later)."""
        copy = self.workdir.with_name(self.workdir.name + "-snapshot")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.aof_dir, copy)
        return copy

    def restart(self, from_snapshot: Path | None = None) -> None:
        """Crash and come back: SIGKILL, then start from the AOF on the same port.
        With `from_snapshot`, from that older copy instead: what an OS crash does to
        the writes that were not fsynced yet (a process kill loses none of them)."""
        self.kill()
        if from_snapshot is not None:
            shutil.rmtree(self.aof_dir)
            shutil.copytree(from_snapshot, self.aof_dir)
        self.start()
        self.restarts += 1

    def close(self) -> None:
        self.kill()
