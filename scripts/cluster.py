"""A local Redis Cluster on 127.0.0.1 for CI and tests: 3 masters by default (`--masters
N` for another count, 1 included) and, with `--replicas 1`, a replica each, started and
torn down by one command.

    python -m scripts.cluster up                        # 3 masters on 7100-7102
    python -m scripts.cluster up --ports 7100-7105 --replicas 1
    python -m scripts.cluster status --ports 7100-7105
    python -m scripts.cluster down --ports 7100-7105
    python -m scripts.cluster up --ports 7110 --masters 1   # a 1-master cluster

Each node is `redis-server --cluster-enabled yes` (Debian's, 7.0, unless --binary or
REDIS_SERVER says otherwise), daemonized, with its files (config, pid, log) in
`<dir>/<port>/` (default /tmp/redurable-cluster); the cluster bus uses port + 10000, so
those ports must be free too. `up` returns once every node reports cluster_state:ok;
`down` stops the nodes whose pid files it finds there (only those: never by name) and
removes their files. From Python, `LocalCluster` does the same:

    with LocalCluster(free_cluster_ports(3), workdir=tmp) as cluster:
        RedisCluster.from_url(cluster.url) ...

`kill(port)` and `restart(port)` SIGKILL one node and start it again from its files
(the chaos scenarios of scripts/chaos/cluster_failover.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from sdk._devserver import free_port, port_in_use

DEFAULT_DIR = Path("/tmp/redurable-cluster")
BUS_OFFSET = 10000
SLOTS = 16384


def parse_ports(text: str) -> list[int]:
    """"7100-7105" or "7100,7101,7102"."""
    ports: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            ports += range(int(first), int(last or first) + 1)
        except ValueError:
            raise ValueError(f"ports: {text!r} is not like 7100-7105 or 7100,7101") from None
    return ports


def free_cluster_ports(count: int) -> list[int]:
    """`count` free ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if fits_beside(port, ports) and not port_in_use(port + BUS_OFFSET):
            ports.append(port)
    return ports


def fits_beside(port: int, chosen: Sequence[int]) -> bool:
    """Whether a node on `port` and its cluster bus (+10000) clash with none of the nodes
    on `chosen` and their buses (a node on 33683 has its bus on 43683: a node chosen
    there could not start)."""
    taken = set(chosen) | {p + BUS_OFFSET for p in chosen}
    return port + BUS_OFFSET < 65536 and port not in taken and port + BUS_OFFSET not in taken


class LocalCluster:
    def __init__(self, ports: Sequence[int], *, replicas: int = 0, masters: int = 3,
                 workdir: Path = DEFAULT_DIR, binary: str | None = None) -> None:
        if replicas not in (0, 1):
            raise ValueError("replicas must be 0 or 1")
        if masters < 1 or (masters < 3 and replicas):
            raise ValueError("masters must be >= 1 (>= 3 with replicas)")
        if len(ports) != masters * (1 + replicas):
            raise ValueError(f"{masters} masters with {replicas} replica(s) each need "
                             f"{masters * (1 + replicas)} ports, not {len(ports)}")
        self.ports = list(ports)
        self.replicas = replicas
        self.master_count = masters
        self.workdir = workdir
        self.binary = binary or os.environ.get("REDIS_SERVER") or shutil.which("redis-server")

    @property
    def url(self) -> str:
        """The URL of one node (a cluster client discovers the others from it)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def _pidfile(self, port: int) -> Path:
        return self.workdir / str(port) / "redis.pid"

    def start(self, timeout: float = 30.0) -> LocalCluster:
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        busy = [p for p in self.ports if port_in_use(p) or port_in_use(p + BUS_OFFSET)]
        if busy:
            raise RuntimeError(f"ports in use (or their bus port +{BUS_OFFSET}): {busy}")
        for port in self.ports:
            directory = self.workdir / str(port)
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            self._spawn(port)
        try:
            self._wait(lambda: all(port_in_use(p) for p in self.ports), timeout,
                       "nodes did not listen")
            if self.master_count < 3:
                self._create_small()
            else:
                subprocess.run(
                    ["redis-cli", "--cluster", "create",
                     *(f"127.0.0.1:{p}" for p in self.ports),
                     "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                    check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
            self._wait(self.ready, timeout, "cluster_state did not become ok")
        except BaseException:
            self.stop()
            raise
        return self

    def _create_small(self) -> None:
        """`redis-cli --cluster create` refuses fewer than 3 masters: equal contiguous
        slot ranges by hand, then each node meets the first."""
        per = SLOTS // self.master_count
        for i, port in enumerate(self.ports):
            last = SLOTS - 1 if i == self.master_count - 1 else (i + 1) * per - 1
            with Redis(host="127.0.0.1", port=port, socket_timeout=5) as node:
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
                if i:
                    node.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])

    def _spawn(self, port: int) -> None:
        """Start (or restart) the node of `port` from the files in its directory: a
        restarted node reads its identity and the cluster's config from nodes.conf."""
        assert self.binary is not None
        subprocess.run([
            self.binary, "--port", str(port), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000", "--dir", str(self.workdir / str(port)),
            "--save", "", "--appendonly", "no", "--daemonize", "yes",
            # Start a new replica's full sync at once (the default waits 5 s for others).
            "--repl-diskless-sync-delay", "0",
            "--pidfile", str(self._pidfile(port)), "--logfile", "redis.log",
        ], check=True, stdin=subprocess.DEVNULL)

    def kill(self, port: int) -> None:
        """SIGKILL the node of `port` (its files stay, for `restart`)."""
        pid = self._pid(port)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self, port: int, timeout: float = 10.0) -> None:
        """Start a killed node again; it rejoins as what the cluster made of it (a
        master that was failed over comes back as a replica of its successor)."""
        self._spawn(port)
        self._wait(lambda: port_in_use(port), timeout, f"node {port} did not listen")

    def nodes(self, port: int) -> list[tuple[int, str, set[str], str]]:
        """CLUSTER NODES as node `port` sees it: (port, node id, flags, master id)."""
        with Redis(host="127.0.0.1", port=port, decode_responses=True,
                   socket_timeout=1) as node:
            text: str = node.execute_command("CLUSTER", "NODES")
        out = []
        for line in text.splitlines():
            node_id, address, flags, master, *_ = line.split()
            out.append((int(address.split("@")[0].rsplit(":", 1)[1]), node_id,
                        set(flags.split(",")), master))
        return out

    def _pid(self, port: int) -> int | None:
        """The pid of this port's server, if its pid file names it (only that one: a
        stale pid file may name another process)."""
        try:
            pid = int(self._pidfile(port).read_text().strip())
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f":{port}".encode() in title else None

    @staticmethod
    def _wait(check: object, timeout: float, what: str) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"local cluster: {what} within {timeout:g} s")
            time.sleep(0.05)

    def ready(self) -> bool:
        """Every node answers cluster_state:ok, knows every other node and sees every
        master."""
        for port in self.ports:
            try:
                with Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
                    info = node.cluster("INFO")
            except (RedisError, OSError):
                return False
            if info.get("cluster_state") != "ok" or \
                    int(info.get("cluster_known_nodes", 0)) != len(self.ports):
                return False
            try:  # with replicas: every node has learnt which nodes replicate
                if len(self.masters(port)) != self.master_count:
                    return False
            except (RedisError, OSError):
                return False
        return True

    def masters(self, port: int | None = None) -> list[int]:
        """Ports of the nodes that are masters now, as node `port` (the first) sees it."""
        with Redis(host="127.0.0.1", port=port or self.ports[0], decode_responses=True,
                   socket_timeout=1) as node:
            nodes: str = node.execute_command("CLUSTER", "NODES")
        masters = []
        for line in nodes.splitlines():
            _, address, flags, *_ = line.split()
            if "master" in flags.split(","):
                masters.append(int(address.split("@")[0].rsplit(":", 1)[1]))
        return sorted(masters)

    def stop(self) -> None:
        """Stop the nodes started here (by the pids in their pid files) and remove
        their files."""
        for port in self.ports:
            if self._pid(port) is not None:
                self.kill(port)
            shutil.rmtree(self.workdir / str(port), ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def move_slot(slot: int, source: int, target: int, ports: Sequence[int]) -> None:
    """Migrate `slot`, its keys included, from the master on port `source` to the one on
    `target` (as `redis-cli --cluster reshard` does, one slot), and tell every node."""
    def run(port: int, *command: object) -> Any:
        with Redis(host="127.0.0.1", port=port, decode_responses=True,
                   socket_timeout=10) as node:
            return node.execute_command(*command)

    source_id, target_id = run(source, "CLUSTER", "MYID"), run(target, "CLUSTER", "MYID")
    run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    run(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := run(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
        run(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    for port in [target, source, *(p for p in ports if p not in (source, target))]:
        run(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.cluster",
                                description="A local Redis Cluster (see docstring).")
    p.add_argument("command", choices=["up", "down", "status"])
    p.add_argument("--ports", default=None,
                   help="up: 7100-7102 (default; 7100-7105 with --replicas 1), or a list; "
                   "down/status: the nodes of these ports (default 7100-7105) started here")
    p.add_argument("--replicas", type=int, default=0, choices=[0, 1], help="up only")
    p.add_argument("--masters", type=int, default=3, help="how many masters (default 3)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--binary", default=None, help="redis-server (or valkey-server) to run")
    args = p.parse_args(argv)
    try:
        if args.command == "up":
            default = "7100-7105" if args.replicas else f"7100-{7100 + args.masters - 1}"
            ports = parse_ports(args.ports or default)
            replicas = args.replicas
        else:  # the nodes that `up` started in --dir
            ports = [q for q in parse_ports(args.ports or "7100-7105")
                     if (args.dir / str(q) / "redis.pid").exists()]
            if not ports:
                print(f"no cluster node started in {args.dir}")
                return 0 if args.command == "down" else 1
            replicas = len(ports) // args.masters - 1
        cluster = LocalCluster(ports, replicas=replicas, masters=args.masters,
                               workdir=args.dir, binary=args.binary)
    except ValueError as exc:
        p.error(str(exc))
    if args.command == "up":
        try:
            cluster.start()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            print(f"cluster up failed: {exc} {detail.decode(errors='replace')}".strip(),
                  file=sys.stderr)
            return 1
        print(f"cluster up: {cluster.url} (masters {cluster.masters()})")
    elif args.command == "down":
        cluster.stop()
        print("cluster down")
    else:
        ok = cluster.ready()
        print("cluster ok" if ok else "cluster not ready")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
