"""The machine and code a benchmark ran on, for the report's header
(scripts/bench/report.py)."""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from scripts.bench.servers import valkey_binary
from scripts.bench.util import CODE, REPO, loop_name


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(
            cmd, shell=True, capture_output=True, text=True, timeout=20, cwd=REPO
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    import hiredis
    import redis

    cpu = _sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    argv = sys.argv[1:]
    return {
        "command": shlex.join(["scripts/bench/run", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": _sh("nproc"),
        "cpu": cpu,
        "free_h": _sh("free -h"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "hiredis": getattr(hiredis, "__version__", "?"),
        "redis_server": _sh("redis-server --version").split(" v=")[-1].split()[0],
        "git": _sh("git rev-parse --short HEAD"),
        "dirty": _sh("git status --short -- engine sdk").splitlines(),
        "snapshot": (CODE / "SNAPSHOT").read_text().strip() if CODE != REPO else "",
        "load_before": " ".join(_sh("cat /proc/loadavg").split()[:3]),
        "loop": loop_name(),
        "valkey": _sh(f"{valkey_binary()} --version").split(" v=")[-1].split()[0],
        "quick": args.quick,
    }
