"""A private Sentinel deployment on 127.0.0.1 for tests and scenarios: a primary,
`replicas` replicas and `sentinels` Sentinels (Debian's redis-server 7.0, the Sentinels
run as `redis-server --sentinel`), each on a free port, torn down by `close()`.

The Sentinels are set to act fast (primary down after 400 ms, failover timeout 2 s),
so a failover after `kill_primary()` takes a second or two, not the defaults' 30 s+.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from scripts.chaos.server import redis_server_binary
from sdk._devserver import free_port, port_in_use

SERVICE = "redurable"
DOWN_AFTER_MS = 400


class LinkDelay:
    """A TCP relay on 127.0.0.1 that holds every chunk `delay_ms` before passing it
    on, in its own thread: the replication link of a primary on another host. When
    the primary's side closes, what the relay still holds is dropped, as when the
    primary's host dies with data not yet on the wire."""

    def __init__(self, target_port: int, delay_ms: float) -> None:
        self.target_port = target_port
        self.delay = delay_ms / 1000
        self.port = free_port()
        self.dropped_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        primary_gone = asyncio.Event()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       from_primary: bool) -> None:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def send() -> None:
                while True:
                    due, chunk = await queue.get()
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    if from_primary and primary_gone.is_set():
                        self.dropped_bytes += len(chunk)
                        continue
                    dst.write(chunk)

            sender = asyncio.create_task(send())
            try:
                # A SIGKILLed server's socket may end with a reset rather than EOF.
                with contextlib.suppress(OSError):
                    while chunk := await src.read(1 << 16):
                        queue.put_nowait((time.monotonic() + self.delay, chunk))
                if from_primary:
                    primary_gone.set()
                    while not queue.empty():
                        self.dropped_bytes += len(queue.get_nowait()[1])
                    return
                while not queue.empty():
                    await asyncio.sleep(0.005)
            finally:
                sender.cancel()
                with contextlib.suppress(Exception):
                    dst.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(pipe(up_reader, writer, True), pipe(reader, up_writer, False))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


class SentinelGroup:
    def __init__(self, workdir: Path, *, replicas: int = 1, sentinels: int = 1,
                 appendonly: bool = False, link_delay_ms: float = 0.0) -> None:
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

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

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
            "--port", str(port), "--bind", "127.0.0.1", "--save", "",
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
                f"port {port}", "bind 127.0.0.1", f"dir {directory}",
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
                with SyncRedis(port=port, host="127.0.0.1") as primary:
                    info = primary.info("replication")
                online = sum(1 for k, v in info.items()
                             if k.startswith("slave") and isinstance(v, dict)
                             and v.get("state") == "online")
                known = True
                for sentinel_port in self.sentinel_ports:
                    with SyncRedis(port=sentinel_port, host="127.0.0.1") as sentinel:
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
                with SyncRedis(port=port, host="127.0.0.1") as sentinel:
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
                    with SyncRedis(port=port, host="127.0.0.1") as new:
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
