"""Runs each peer's driver (scripts/bench/peers/<name>_peer.py) in that peer's venv
(.bench-venv/<name>, made by setup_venvs.sh) and collects its JSON answer. Peers on
Redis get a private redis-server of their own; the others start their own server
(Temporal dev server, restate-server) or use the machine's PostgreSQL (DBOS)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from typing import Any

from scripts.bench.servers import PrivateServer, redis_server_binary, valkey_binary
from scripts.bench.util import BENCH_VENV, CODE, OUT

PEERS = ("arq", "redflow", "dbos", "temporal", "restate")
REDIS_PEERS = {"arq", "redflow"}
TIMEOUT_S = 1200


def select(spec: str) -> list[str]:
    if spec == "none":
        return []
    if spec == "all":
        return list(PEERS)
    names = [n for n in spec.split(",") if n]
    unknown = set(names) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peers: {', '.join(sorted(unknown))}")
    return names


def _tail(path: Any, chars: int = 600) -> str:
    try:
        text: str = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:].strip()


def _end_group(pgid: int) -> None:
    """Anything the driver left running in its process group (a server it started)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run(name: str, *, quick: bool = False) -> dict[str, Any]:
    python = BENCH_VENV / name / "bin" / "python"
    if not (BENCH_VENV / name / ".ok").exists():
        return {
            "status": "not installed",
            "reason": f"its venv did not install: {_tail(BENCH_VENV / f'{name}.log')}",
        }
    args = [str(python), str(CODE / "scripts" / "bench" / "peers" / f"{name}_peer.py")]
    if quick:
        args += ["--workflows", "300", "--latency", "50", "--signals", "50"]
    workdir = OUT / "peers" / name
    workdir.mkdir(parents=True, exist_ok=True)
    args += ["--workdir", str(workdir)]
    log_path = OUT / "logs" / f"peer-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = None
    t0 = time.monotonic()
    try:
        if name in REDIS_PEERS:
            server = PrivateServer(redis_server_binary() or valkey_binary()).start()
            args += ["--redis-url", server.url]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                args,
                cwd=CODE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
            try:
                out, _ = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # The driver and the servers it started share its process group.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
            finally:
                _end_group(proc.pid)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            return {
                "status": "failed",
                "reason": f"driver exited {proc.returncode}: {_tail(log_path)}",
            }
        result: dict[str, Any] = json.loads(lines[-1])
        if server is not None:
            result["server"] = server.version()
        return result
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {TIMEOUT_S}s"}
    finally:
        if server is not None:
            server.stop()
        print(f"   peer {name}: {time.monotonic() - t0:.1f}s", flush=True)
