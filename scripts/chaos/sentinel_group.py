"""A private Sentinel deployment on 127.0.0.1 for tests and scenarios: a primary,
`replicas` replicas and `sentinels` Sentinels (Debian's redis-server 7.0, the Sentinels
run as `redis-server --sentinel`), each on a free port, torn down by `close()`.

The Sentinels are set to act fast (primary down after 1 s, failover timeout 2 s),
so a failover after `kill_primary()` takes a second or two, not the defaults' 30 s+.
With `link_delay_ms`, each replica reaches the first primary through a relay
(scripts/chaos/link_delay.py) that delays its replication stream as a network would.
With `tls`, every server listens on a TLS port only, requires client certificates, and
replicates and monitors over TLS; `url` is then a `rediss+sentinel://` URL.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from scripts.chaos.server import redis_server_binary
from sdk._devserver import free_port, port_in_use

SERVICE = "redurable"
ROOT = Path(__file__).resolve().parents[2]
#: Not less: on a loaded 2-core machine a busy primary can miss PINGs for 400 ms, and
#: a spurious second failover then promoted a lagging replica (docs/reliability.md).
DOWN_AFTER_MS = 1000


@dataclass(frozen=True)
class GroupTls:
    """Certificates for a group over TLS: the CA that signed them all, the servers'
    certificate (also what they present to one another) and a client's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_options(self) -> list[tuple[str, str]]:
        return [("tls-cert-file", str(self.server_cert)), ("tls-key-file", str(self.server_key)),
                ("tls-ca-cert-file", str(self.ca)), ("tls-auth-clients", "yes"),
                ("tls-replication", "yes")]

    def client_options(self) -> dict[str, str]:
        return {"ssl_ca_certs": str(self.ca), "ssl_certfile": str(self.client_cert),
                "ssl_keyfile": str(self.client_key)}


class LinkDelay:
    """scripts/chaos/link_delay.py in a process of its own, on a free port."""

    def __init__(self, target_port: int, delay_ms: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.chaos.link_delay", str(self.port),
             str(target_port), str(delay_ms)],
            cwd=ROOT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_in_use(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the link delay relay did not start")
            time.sleep(0.01)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class SentinelGroup:
    def __init__(self, workdir: Path, *, replicas: int = 1, sentinels: int = 1,
                 appendonly: bool = False, link_delay_ms: float = 0.0,
                 tls: GroupTls | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.data_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports: list[int] = []
        for _ in range(sentinels):
            port = free_port()
            while port in self.data_ports or port in self.sentinel_ports:
                port = free_port()
            self.sentinel_ports.append(port)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        #: > 0: each replica reaches the first primary through a LinkDelay.
        self.link_delay_ms = link_delay_ms
        self.links: list[LinkDelay] = []
        #: Port of the server that was started as the primary.
        self.first_primary = self.data_ports[0]
        self.tls = tls
        if tls is not None and link_delay_ms > 0:
            raise ValueError("a delayed link relays plain text: not with tls")

    def _client(self, port: int) -> SyncRedis:
        """The group's own connection to one of its servers (TLS for a TLS group)."""
        tls: dict[str, Any] = {} if self.tls is None else {"ssl": True,
                                                           **self.tls.client_options()}
        return SyncRedis(port=port, host="127.0.0.1", **tls)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        if self.tls is not None:
            return f"rediss+sentinel://{hosts}/{SERVICE}?{urlencode(self.tls.client_options())}"
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def _listen(self, port: int) -> list[tuple[str, str]]:
        """Where a server listens: `port`, or for a TLS group that port with TLS only."""
        if self.tls is None:
            return [("port", str(port))]
        return [("port", "0"), ("tls-port", str(port)), *self.tls.server_options()]

    def _spawn(self, port: int, args: list[str]) -> None:
        directory = self.workdir / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [self.binary, *args], cwd=directory,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_in_use(port):
            if self.procs[port].poll() is not None:
                log = (directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"server on port {port} exited at start:\n{log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} did not listen in 10 s")
            time.sleep(0.01)

    def _data_args(self, port: int) -> list[str]:
        return [
            *(arg for name, value in self._listen(port) for arg in (f"--{name}", value)),
            "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.workdir / str(port)), "--logfile", "server.log",
            # Announce the address clients can reach (Sentinel hands it out as is).
            "--replica-announce-ip", "127.0.0.1",
            # Start a replica's full sync at once (the default waits 5 s for others).
            "--repl-diskless-sync-delay", "0",
        ]

    def start(self) -> SentinelGroup:
        primary, *replicas = self.data_ports
        self._spawn(primary, self._data_args(primary))
        for port in replicas:
            upstream = primary
            if self.link_delay_ms > 0:
                self.links.append(LinkDelay(primary, self.link_delay_ms))
                upstream = self.links[-1].port
            self._spawn(port, [*self._data_args(port), "--replicaof", "127.0.0.1", str(upstream)])
        quorum = len(self.sentinel_ports) // 2 + 1
        for port in self.sentinel_ports:
            directory = self.workdir / str(port)
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"  # Sentinel rewrites its config file
            config.write_text("\n".join([
                *(f"{name} {value}" for name, value in self._listen(port)),
                "bind 127.0.0.1", f"dir {directory}",
                "logfile server.log", "sentinel announce-ip 127.0.0.1",
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} {quorum}",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                # Sentinel also points a replica that follows another address than
                # the primary's (a LinkDelay) at the primary itself, failover-timeout
                # after it sees it: later than any run here when links are delayed.
                f"sentinel failover-timeout {SERVICE} "
                f"{60_000 if self.link_delay_ms > 0 else 2000}",
                f"sentinel parallel-syncs {SERVICE} 1",
            ]) + "\n")
            self._spawn(port, [str(config), "--sentinel"])
        self.wait_replicas_online(len(replicas))
        return self

    def wait_replicas_online(self, count: int, timeout: float = 20.0) -> None:
        """Until the primary has `count` replicas in sync and every Sentinel knows them
        (a Sentinel that does not know a replica cannot promote it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port = self.primary_port()
                with self._client(port) as primary:
                    info = primary.info("replication")
                online = sum(1 for k, v in info.items()
                             if k.startswith("slave") and isinstance(v, dict)
                             and v.get("state") == "online")
                known = True
                for sentinel_port in self.sentinel_ports:
                    with self._client(sentinel_port) as sentinel:
                        known = known and len(sentinel.sentinel_slaves(SERVICE)) >= count
                if online >= count and known:
                    return
            except (RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{count} replicas did not come online in {timeout} s")

    def primary_port(self) -> int:
        """The primary's port as the first Sentinel that answers sees it."""
        for port in self.sentinel_ports:
            try:
                with self._client(port) as sentinel:
                    addr = sentinel.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return int(addr[1])
            except (RedisError, OSError):
                continue
        raise RuntimeError("no Sentinel answered")

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def kill_primary(self) -> int:
        """SIGKILL the current primary; returns its port."""
        port = self.primary_port()
        self.kill(port)
        return port

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Until the Sentinels name another primary and it answers as one; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port = self.primary_port()
                if port != old_port:
                    with self._client(port) as new:
                        if new.execute_command("ROLE")[0] == b"master":
                            return port
            except (RedisError, OSError, RuntimeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no failover within {timeout} s")

    def close(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        for link in self.links:
            link.close()
