"""Where a worker's time goes under the throughput load: `scripts/bench/run --profile`.

1. py-spy (sampling, from .bench-venv/tools) on the worker process: CPU samples by
   function (self and inclusive) and by layer (our code, redis-py, asyncio, ...);
2. cProfile on the worker: exact call counts and per-call costs of the hot functions;
3. Redis: every top-level command timed by the server (SLOWLOG with a 0 us threshold),
   grouped by Redis Function, plus INFO commandstats.

Writes .bench-out/profile.md (and the raw files beside it) and prints it.
"""

from __future__ import annotations

import pstats
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from scripts.bench import redurable_bench as rb
from scripts.bench.servers import PrivateServer, redis_server_binary, valkey_binary
from scripts.bench.util import BENCH_VENV, OUT, loop_name, run_async

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

LAYERS = (
    ("engine/", "engine (ours)"),
    ("sdk/", "sdk (ours)"),
    ("scripts/bench", "bench harness"),
    ("redis/", "redis-py"),
    ("hiredis", "hiredis"),
    ("anyio/", "anyio"),
    ("structlog/", "structlog"),
    ("msgpack", "msgpack"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
)


def layer(file: str) -> str:
    for needle, name in LAYERS:
        if needle in file:
            return name
    return "other (stdlib, interpreter)"


def parse_frame(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame)
    if not m:
        return frame, ""
    return m["func"], m["file"]


def analyse_pyspy(path: Path, top: int = 25) -> list[str]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    via: Counter[str] = Counter()  # leaf layer, attributed to the nearest frame of ours
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = [parse_frame(f) for f in stack.split(";")]
        total += count
        func, file = frames[-1]
        own[f"{func} ({file})"] += count
        layers[layer(file)] += count
        seen = set()
        for fn, fl in frames:
            key = f"{fn} ({fl})"
            if key not in seen:
                inclusive[key] += count
                seen.add(key)
        ours = [f"{fn} ({fl})" for fn, fl in frames if "engine/" in fl or "sdk/" in fl]
        via[f"{ours[-1] if ours else '(no frame of ours)'} -> {layer(file)}"] += count
    if not total:
        return ["(no samples)"]

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}%"

    out = [f"{total} samples (CPU only, idle excluded).", "", "By layer of the running code:", ""]
    out += [f"- {name}: {pct(n)}" for name, n in layers.most_common()]
    out += ["", f"Top {top} functions by own time:", "", "| own | function |", "|---|---|"]
    out += [f"| {pct(n)} | `{k}` |" for k, n in own.most_common(top)]
    out += ["", f"Top {top} of our functions by inclusive time:", "", "| incl. | function |",
            "|---|---|"]
    mine = [(k, n) for k, n in inclusive.items() if "engine/" in k or "sdk/" in k]
    out += [f"| {pct(n)} | `{k}` |" for k, n in sorted(mine, key=lambda kv: -kv[1])[:top]]
    out += ["", "Our innermost frame -> the layer that was running (top 20):", "",
            "| share | where |", "|---|---|"]
    out += [f"| {pct(n)} | `{k}` |" for k, n in via.most_common(20)]
    return out


def analyse_cprofile(path: Path, top: int = 25) -> list[str]:
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    total_tt = 0.0
    for (file, line, func), (_cc, nc, tt, ct, _callers) in raw.items():
        total_tt += tt
        rows.append((tt, ct, nc, f"{func} ({Path(file).name}:{line})", file))
    out = [f"Total own time {total_tt:.2f} s (cProfile inflates it; use it for the shares "
           "and call counts).", "", "| own s | incl. s | calls | us/call (own) | function |",
           "|---|---|---|---|---|"]
    for tt, ct, nc, name, _ in sorted(rows, key=lambda r: -r[0])[:top]:
        out.append(f"| {tt:.3f} | {ct:.3f} | {nc} | {1e6 * tt / max(nc, 1):.1f} | `{name}` |")
    out += ["", "Our functions by inclusive time:", "",
            "| incl. s | calls | us/call (incl.) | function |", "|---|---|---|---|"]
    ours = [r for r in rows if "/engine/" in r[4] or "/sdk/" in r[4]]
    for _tt, ct, nc, name, _ in sorted(ours, key=lambda r: -r[1])[:top]:
        out.append(f"| {ct:.3f} | {nc} | {1e6 * ct / max(nc, 1):.1f} | `{name}` |")
    return out


def _name(entry: dict[str, Any]) -> str:
    cmd = entry.get("command", b"")
    text = cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)
    parts = text.split()
    if not parts:
        return "?"
    name = parts[0].upper()
    if name in ("FCALL", "FCALL_RO") and len(parts) > 1:
        name = f"FCALL {parts[1]}"
    return name


def analyse_slowlog(entries: list[dict[str, Any]]) -> list[str]:
    """Top-level commands by server time; and per Redis Function, the commands it ran
    (SLOWLOG logs those too, with client address '?:0', just before the FCALL itself)."""
    top: dict[str, list[int]] = defaultdict(list)
    inner: dict[str, Counter[str]] = defaultdict(Counter)
    inner_us: dict[str, int] = defaultdict(int)
    pending: list[dict[str, Any]] = []
    for e in sorted(entries, key=lambda e: int(e.get("id", 0))):
        if e.get("client_address") in (b"?:0", "?:0"):
            pending.append(e)
            continue
        name = _name(e)
        top[name].append(int(e.get("duration", 0)))
        for sub in pending:
            inner[name][_name(sub)] += 1
            inner_us[name] += int(sub.get("duration", 0))
        pending = []
    total = sum(sum(v) for v in top.values()) or 1
    out = ["Top-level commands (FCALL time includes the commands it runs):", "",
           "| command | calls | total ms | share | us mean | us p50 | us p99 |",
           "|---|---|---|---|---|---|---|"]
    for name, durs in sorted(top.items(), key=lambda kv: -sum(kv[1])):
        durs.sort()
        out.append(
            f"| {name} | {len(durs)} | {sum(durs) / 1000:.1f} | {100 * sum(durs) / total:.1f}% "
            f"| {sum(durs) / len(durs):.1f} | {durs[len(durs) // 2]} "
            f"| {durs[min(len(durs) - 1, int(len(durs) * 0.99))]} |"
        )
    out += ["", "Inside each Redis Function, per call: commands run, their own time (us, "
            "rounded down per command by Redis) and the rest (Lua, argument handling, cjson):",
            "", "| function | us per call | commands per call | their us | rest us | commands |",
            "|---|---|---|---|---|---|"]
    for name, durs in sorted(top.items(), key=lambda kv: -sum(kv[1])):
        if not name.startswith("FCALL"):
            continue
        calls = len(durs)
        per = sum(durs) / calls
        cmds = inner[name]
        own = inner_us[name] / calls
        mix = ", ".join(f"{k} {v / calls:.1f}" for k, v in cmds.most_common(12))
        out.append(
            f"| {name[6:]} | {per:.1f} | {sum(cmds.values()) / calls:.1f} | {own:.1f} "
            f"| {per - own:.1f} | {mix} |"
        )
    return out


def main(quick: bool = False) -> None:
    n = 600 if quick else 2000
    pyspy = BENCH_VENV / "tools" / "bin" / "py-spy"
    out_dir = OUT / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Worker profile under the throughput load", "", f"Event loop: {loop_name()}.", ""]
    binary = redis_server_binary() or valkey_binary()
    with PrivateServer(binary) as server:
        base = run_async(rb.throughput(server, 1, n))
        lines += [
            f"Unprofiled run for reference: {base['wf_per_s']:.0f} wf/s; CPU s workers / "
            f"redis / driver: {base['cpu_s']['workers']:.2f} / {base['cpu_s']['server']:.2f} / "
            f"{base['cpu_s']['driver']:.2f} over {base['elapsed_s']:.2f} s; Redis "
            f"{base['fcall_usec_per_call']:.1f} us per FCALL, "
            f"{base['per_step']['server_usec']:.0f} us of commands per step (INFO "
            "commandstats; the SLOWLOG run below inflates both).",
            "",
        ]
        if pyspy.exists():
            raw = out_dir / "pyspy.txt"
            raw.unlink(missing_ok=True)
            attach = [str(pyspy), "record", "--nonblocking", "-r", "250", "-f", "raw", "-o",
                      str(raw)]
            r = run_async(rb.throughput(server, 1, n, attach=attach))
            lines += [f"## py-spy (worker; {r['wf_per_s']:.0f} wf/s while sampled)", ""]
            lines += analyse_pyspy(raw) if raw.exists() else ["py-spy wrote nothing"]
        else:
            lines += ["## py-spy", "", "not installed (.bench-venv/tools)"]
        prof = out_dir / "worker.pstats"
        r = run_async(rb.throughput(server, 1, n, worker_args=["--profile", str(prof)]))
        lines += ["", f"## cProfile (worker; {r['wf_per_s']:.0f} wf/s under cProfile)", ""]
        lines += analyse_cprofile(prof) if prof.exists() else ["cProfile wrote nothing"]
        with server.sync_client() as c:
            c.config_set("slowlog-log-slower-than", 0)
            c.config_set("slowlog-max-len", 500000)
        r = run_async(rb.throughput(server, 1, n))
        entries = server.slowlog(500000)
        lines += [
            "",
            "## Redis: every top-level command, timed by the server (SLOWLOG at 0 us)",
            "",
            f"{r['wf_per_s']:.0f} wf/s; redis-server CPU {r['cpu_s']['server']:.2f} s over "
            f"{r['elapsed_s']:.2f} s; {r['per_step']['fcalls']:.2f} FCALLs and "
            f"{r['per_step']['commands_inside_lua']:.1f} commands inside Lua per step.",
            "",
        ]
        lines += analyse_slowlog(entries)
        lines += ["", "INFO commandstats (us per call):", ""]
        lines += ["| command | calls | us/call |", "|---|---|---|"]
        for name, s in sorted(r["commandstats"].items(), key=lambda kv: -kv[1]["usec"])[:20]:
            lines.append(f"| {name} | {int(s['calls'])} | {s['usec_per_call']:.2f} |")
    text = "\n".join(lines) + "\n"
    (OUT / "profile.md").write_text(text)
    print(text)
    print(f"wrote {OUT / 'profile.md'}")
