"""The report's "redurable in detail" section (scripts/bench/report.py): the throughput
variants, latency, signals, recovery and the other runs, each a table or a line."""

from __future__ import annotations

from typing import Any

from scripts.bench.report_format import error_of, f, pq, ran_ok, table


def details(res: dict[str, Any]) -> list[str]:
    rd = res["redurable"]
    out: list[str] = []
    tps = [k for k in ("throughput_1", "throughput_2", "throughput_1_asyncio",
                       "valkey_throughput_1", "aof_everysec", "aof_always", "aof_everysec_wait",
                       "aof_always_wait", "replicas_1_wait") if ran_ok(rd.get(k))]
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
              if k in rd and not ran_ok(rd[k])]
    for k in failed:
        out.append(f"\n{k}: failed: {error_of(rd[k])}")
    tp1 = rd.get("throughput_1")
    lat = rd.get("latency")
    if ran_ok(tp1):
        out += ["", "### Cost per activity step", ""]
        rows = []
        for label, r in (("throughput run (1 worker)", tp1), ("one workflow at a time", lat)):
            if not ran_ok(r) or "per_step" not in r:
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
    if ran_ok(sig):
        out += [
            "",
            f"Signals: the `signal` call itself (client FCALL round trip) p50/p99 "
            f"{pq(sig['signal_call'], 2)} ms; observed = the handler in workflow code ran "
            "(clock read in the worker process, CLOCK_MONOTONIC).",
        ]
    hist = rd.get("history")
    if ran_ok(hist):
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
    if ran_ok(mem):
        out += [
            "",
            "### Memory",
            "",
            f"Worker RSS with {mem['open_workflows']:,} open workflows cached (each waiting on "
            f"a signal): {f(mem['worker_rss_mib'], 1)} MiB "
            f"(from {f(mem['worker_rss_before_mib'], 1)} MiB with 200): "
            f"{f(mem['kib_per_cached_workflow'], 2)} KiB per cached workflow "
            f"instance. Redis: {f(mem['redis_bytes_per_open_workflow'], 0)} bytes per open "
            f"workflow, {f(mem['redis_used_mib'], 1)} MiB used. By part and history "
            'length: "Worker memory per cached run" below.',
        ]
    t = rd.get("transport")
    if ran_ok(t):
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
    if ran_ok(rec):
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
        out.append(error_of(rec))
    return out
