"""The fleet benchmark's arithmetic and markdown (no I/O but the docs file): counter
snapshots taken around a measuring window become one row of per-step costs; rows become
the table that `python -m scripts.bench.fleet` prints and `--write-docs` puts into
docs/benchmarks.md between the FLEET_BEGIN and FLEET_END markers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scripts.bench.fleet_floor import FloorRow
from scripts.bench.fleet_floor import table as floor_table
from scripts.bench.peers.common import percentile

FLEET_BEGIN = "<!-- fleet:begin (written by python -m scripts.bench.fleet --write-docs) -->"
FLEET_END = "<!-- fleet:end -->"
#: Worker stats that the table reads (sdk/worker/workflow_tasks.py counts them).
CACHE_STATS = ("cache_hits", "full_replays", "new_runs")


@dataclass
class Snapshot:
    """Cumulative counters at one moment: CPU seconds of all worker processes (their
    own clock, precise) and from /proc (10 ms ticks), the server's CPU seconds, and the
    workers' counters summed (client round trips, Worker.stats)."""

    worker_cpu_s: float
    proc_cpu_s: float
    redis_cpu_s: float
    counts: dict[str, int] = field(default_factory=dict)
    at: float = 0.0


def summed(dicts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counters of several processes added up, key by key."""
    out: dict[str, int] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = out.get(key, 0) + int(value)
    return out


@dataclass
class Row:
    """One measuring window: `steps` steps of one workload on `workers` processes."""

    workload: str
    #: The history length asked for, and the mean measured at the window's start.
    target: int
    events: int
    workers: int
    steps: int
    seconds: float
    worker_cpu_s: float
    proc_cpu_s: float
    redis_cpu_s: float
    counts: dict[str, int]
    #: Signal -> observed, one signal at a time (the table's column) and during the
    #: window, behind the other workflows' steps (raw results only).
    latencies_ms: list[float] = field(default_factory=list)
    loaded_ms: list[float] = field(default_factory=list)
    idle_ms_s: float | None = None
    max_cached: int | None = None

    @property
    def worker_ms(self) -> float:
        return self.worker_cpu_s * 1000 / self.steps

    @property
    def redis_ms(self) -> float:
        return self.redis_cpu_s * 1000 / self.steps

    @property
    def tasks(self) -> int:
        """Workflow tasks that found a cached run, replayed one, or began one."""
        return sum(self.counts.get(name, 0) for name in CACHE_STATS)

    @property
    def hit_rate(self) -> float | None:
        return self.counts.get("cache_hits", 0) / self.tasks if self.tasks else None

    @property
    def replays_per_step(self) -> float:
        return self.counts.get("full_replays", 0) / self.steps

    @property
    def wakeups_per_step(self) -> float | None:
        """The workers' voluntary context switches (each a sleep ended by a wake-up)
        per step; None from workers that do not report them."""
        if "voluntary_switches" not in self.counts:
            return None
        return self.counts["voluntary_switches"] / self.steps

    def latency(self, p: float) -> float | None:
        return percentile(self.latencies_ms, p) if self.latencies_ms else None

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "target_events": self.target,
            "events": self.events,
            "workers": self.workers,
            "max_cached": self.max_cached,
            "steps": self.steps,
            "seconds": self.seconds,
            "worker_ms_per_step": self.worker_ms,
            "proc_worker_ms_per_step": self.proc_cpu_s * 1000 / self.steps,
            "redis_ms_per_step": self.redis_ms,
            "hit_rate": self.hit_rate,
            "full_replays_per_step": self.replays_per_step,
            "wakeups_per_step": self.wakeups_per_step,
            "p50_ms": self.latency(50),
            "p99_ms": self.latency(99),
            "loaded_p50_ms": percentile(self.loaded_ms, 50) if self.loaded_ms else None,
            "loaded_p99_ms": percentile(self.loaded_ms, 99) if self.loaded_ms else None,
            "idle_ms_s_per_worker": self.idle_ms_s,
            "counts": self.counts,
        }


def window(
    workload: str,
    target: int,
    events: int,
    workers: int,
    steps: int,
    before: Snapshot,
    after: Snapshot,
    *,
    latencies_ms: Sequence[float] = (),
    loaded_ms: Sequence[float] = (),
    idle_ms_s: float | None = None,
    max_cached: int | None = None,
) -> Row:
    """The row of a window between two snapshots."""
    if steps <= 0:
        raise ValueError(f"a window needs at least one step, got {steps}")
    keys = set(before.counts) | set(after.counts)
    return Row(
        workload=workload,
        target=target,
        events=events,
        workers=workers,
        steps=steps,
        seconds=after.at - before.at,
        worker_cpu_s=after.worker_cpu_s - before.worker_cpu_s,
        proc_cpu_s=after.proc_cpu_s - before.proc_cpu_s,
        redis_cpu_s=after.redis_cpu_s - before.redis_cpu_s,
        counts={k: after.counts.get(k, 0) - before.counts.get(k, 0) for k in sorted(keys)},
        latencies_ms=list(latencies_ms),
        loaded_ms=list(loaded_ms),
        idle_ms_s=idle_ms_s,
        max_cached=max_cached,
    )


def idle_per_worker(before: Snapshot, after: Snapshot, workers: int) -> float:
    """Mean CPU of one worker over an idle window, ms per second."""
    seconds = after.at - before.at
    if workers <= 0 or seconds <= 0:
        raise ValueError("an idle window needs workers and a duration")
    return (after.worker_cpu_s - before.worker_cpu_s) * 1000 / seconds / workers


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float, base: float | None) -> str:
    return "" if base is None or base <= 0 else f" ({value / base:.1f}x)"


def table(rows: Sequence[Row]) -> str:
    """Markdown, one row per window; CPU per step also as a ratio to the same
    workload's row with the fewest workers (the targets compare K=20 with K=1)."""
    lines = [
        "| workload | events | workers | worker CPU ms/step | Redis CPU ms/step "
        "| cache hit | full replays/step | signal->observed p50 / p99 ms, one at a time "
        "| idle CPU/worker ms/s | wake-ups/step | steps |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base: dict[tuple[str, int], Row] = {}
    for row in sorted(rows, key=lambda r: r.workers):
        base.setdefault((row.workload, row.target), row)
    for row in rows:
        first = base[(row.workload, row.target)]
        same = first is row
        worker = _num(row.worker_ms) + ("" if same else _ratio(row.worker_ms, first.worker_ms))
        redis = _num(row.redis_ms) + ("" if same else _ratio(row.redis_ms, first.redis_ms))
        hit = "-" if row.hit_rate is None else f"{row.hit_rate * 100:.0f}%"
        lat = "-"
        if row.latencies_ms:
            lat = f"{_num(row.latency(50), 2)} / {_num(row.latency(99), 2)}"
        who = str(row.workers)
        if row.max_cached is not None:
            who += f" (max_cached {row.max_cached})"
        lines.append(
            f"| {row.workload} | {row.events:,} | {who} | {worker} | {redis} | {hit} "
            f"| {row.replays_per_step:.3f} | {lat} | {_num(row.idle_ms_s, 1)} "
            f"| {_num(row.wakeups_per_step, 2)} | {row.steps:,} |"
        )
    return "\n".join(lines)


@dataclass
class Throughput:
    """Single-process throughput of the 3-step story: redurable and the engine floor,
    each the median of its rounds (workflows/s)."""

    redurable: list[float]
    floor: list[float]

    @staticmethod
    def median(values: Sequence[float]) -> float:
        ordered = sorted(values)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def fraction(self) -> float:
        return self.median(self.redurable) / self.median(self.floor)

    def line(self) -> str:
        def rounds(values: Sequence[float]) -> str:
            return ", ".join(f"{v:,.0f}" for v in values)

        return (
            f"Single-process throughput (1 worker process, workflows of 3 sequential steps, "
            f"medians of {len(self.redurable)} interleaved rounds): redurable "
            f"{self.median(self.redurable):,.0f} wf/s ({rounds(self.redurable)}), engine floor "
            f"{self.median(self.floor):,.0f} wf/s ({rounds(self.floor)}): "
            f"**{self.fraction * 100:.0f}% of the floor**."
        )


def section(
    meta: Mapping[str, str],
    rows: Sequence[Row],
    throughput: Throughput | None,
    floor: Sequence[FloorRow] = (),
) -> str:
    """The generated part of the Fleet section: how, when and where, the table, the
    engine floor's fleet rows and what our K ratios are against the floor's."""
    parts = [
        f"- command: `{meta['command']}` ({meta['duration']})",
        f"- date: {meta['date']}; code: git {meta['git']}",
        f"- machine: {meta['machine']}; load before the run {meta['load']}",
        f"- workload: {meta['workload']}",
        "",
        table(rows),
    ]
    if floor:
        parts += ["", floor_table(floor), "", *against_floor(rows, floor)]
    if throughput is not None:
        parts += ["", throughput.line()]
    return "\n".join(parts)


def against_floor(rows: Sequence[Row], floor: Sequence[FloorRow]) -> list[str]:
    """Per kind of load, the largest K's worker CPU per step as a multiple of K=1's:
    ours (each workload and history length) beside the engine floor's."""
    def multiple(load_rows: Sequence[Row | FloorRow]) -> tuple[int, float] | None:
        by_k = {r.workers: r for r in load_rows}
        if 1 not in by_k or len(by_k) < 2:
            return None
        top = max(by_k)
        return top, by_k[top].worker_ms / by_k[1].worker_ms

    lines = []
    for per_worker in (False, True):
        floor_rows = [r for r in floor if ("/worker" in r.load) == per_worker]
        theirs = multiple(floor_rows)
        if theirs is None:
            continue
        ours = []
        for (workload, target) in dict.fromkeys((r.workload, r.target) for r in rows):
            if ("/worker" in workload) != per_worker or _is_cache_scenario(rows, workload):
                continue
            found = multiple([r for r in rows if (r.workload, r.target) == (workload, target)])
            if found is not None and found[0] == theirs[0]:
                ours.append(f"{workload} ~{target:,} events {found[1]:.1f}x")
        load = "the same workflows per worker" if per_worker else "a fixed total load"
        lines.append(
            f"- Worker CPU per step at K={theirs[0]} against K=1, {load}: engine floor "
            f"{theirs[1]:.1f}x; redurable " + ("; ".join(ours) or "-") + "."
        )
    return lines


def _is_cache_scenario(rows: Sequence[Row], workload: str) -> bool:
    """Whether `workload` is the cache scenario (its own max_cached: no K series)."""
    return any(r.workload == workload and r.max_cached is not None for r in rows)


def replace_section(text: str, body: str) -> str:
    """docs/benchmarks.md with `body` between the fleet markers; without the markers,
    a new "Fleet" section with them is added at the end."""
    block = f"{FLEET_BEGIN}\n{body.strip()}\n{FLEET_END}"
    if FLEET_BEGIN in text and FLEET_END in text:
        head, rest = text.split(FLEET_BEGIN, 1)
        tail = rest.split(FLEET_END, 1)[1]
        return head + block + tail
    return text.rstrip("\n") + "\n\n## Fleet\n\n" + block + "\n"
