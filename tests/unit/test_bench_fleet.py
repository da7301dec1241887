"""The fleet benchmark's pure parts (scripts/bench/fleet_report.py, the progress slots,
the command line) on made-up numbers: no worker process, no server."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scripts.bench.fleet import parse_args
from scripts.bench.fleet_drive import Slots
from scripts.bench.fleet_floor import FloorRow
from scripts.bench.fleet_floor import table as floor_table
from scripts.bench.fleet_report import (
    FLEET_BEGIN,
    FLEET_END,
    Row,
    Snapshot,
    Throughput,
    against_floor,
    idle_per_worker,
    replace_section,
    section,
    summed,
    table,
    window,
)
from scripts.bench.workload import report_progress


def _snap(worker: float, redis: float, at: float, **counts: int) -> Snapshot:
    return Snapshot(worker_cpu_s=worker, proc_cpu_s=worker, redis_cpu_s=redis,
                    counts=dict(counts), at=at)


def _row(
    workload: str,
    workers: int,
    worker_s: float,
    redis_s: float,
    *,
    latencies_ms: Sequence[float] = (),
    idle_ms_s: float | None = None,
    max_cached: int | None = None,
) -> Row:
    before = _snap(10.0, 5.0, 100.0, cache_hits=0)
    after = _snap(10.0 + worker_s, 5.0 + redis_s, 102.0, cache_hits=900, full_replays=100)
    return window(workload, 1000, 1010, workers, 1000, before, after,
                  latencies_ms=latencies_ms, idle_ms_s=idle_ms_s, max_cached=max_cached)


def test_summed_adds_each_counter_over_processes() -> None:
    assert summed([{"cache_hits": 3, "a": 1}, {"cache_hits": 4}, {}]) == {"cache_hits": 7, "a": 1}


def test_window_gives_per_step_costs_from_two_snapshots() -> None:
    before = _snap(1.0, 2.0, 50.0, cache_hits=10, full_replays=2, new_runs=1, round_trips=7)
    after = _snap(1.5, 2.2, 54.0, cache_hits=400, full_replays=102, new_runs=1)
    row = window("signal", 100, 104, 4, 500, before, after, latencies_ms=[1.0, 2.0, 9.0],
                 loaded_ms=[40.0, 60.0])
    assert row.seconds == pytest.approx(4.0)
    assert row.worker_ms == pytest.approx(1.0)  # 0.5 s over 500 steps
    assert row.redis_ms == pytest.approx(0.4)
    assert row.counts == {"cache_hits": 390, "full_replays": 100, "new_runs": 0,
                          "round_trips": -7}
    assert row.hit_rate == pytest.approx(390 / 490)
    assert row.replays_per_step == pytest.approx(0.2)
    assert row.latency(50) == 2.0
    assert row.latency(99) == 9.0
    raw = row.to_json()
    assert raw["worker_ms_per_step"] == pytest.approx(1.0)
    assert (raw["p50_ms"], raw["loaded_p50_ms"], raw["loaded_p99_ms"]) == (2.0, 40.0, 60.0)


def test_window_without_steps_or_tasks() -> None:
    snap = _snap(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="at least one step"):
        window("signal", 100, 100, 1, 0, snap, snap)
    row = window("signal", 100, 100, 1, 10, snap, snap)
    assert row.hit_rate is None
    assert row.latency(50) is None


def test_idle_per_worker_is_the_mean_cpu_per_second() -> None:
    assert idle_per_worker(_snap(1.0, 0, 10.0), _snap(1.2, 0, 15.0), 4) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        idle_per_worker(_snap(1.0, 0, 10.0), _snap(1.2, 0, 10.0), 4)


def test_table_compares_each_row_with_the_fewest_workers_of_its_workload() -> None:
    rows = [
        _row("signal", 1, 0.1, 0.05, latencies_ms=[0.5, 0.7], idle_ms_s=5.0),
        _row("activity", 1, 0.4, 0.2),
        _row("signal", 20, 0.3, 0.05, latencies_ms=[0.9]),
        _row("activity", 20, 0.4, 0.3),
    ]
    lines = table(rows).splitlines()
    assert len(lines) == 2 + 4
    assert lines[2] == ("| signal | 1,010 | 1 | 0.100 | 0.050 | 90% | 0.100 | 0.50 / 0.70 "
                        "| 5.0 | - | 1,000 |")
    assert "| 0.300 (3.0x) | 0.050 (1.0x) |" in lines[4]
    assert "| 0.400 (1.0x) | 0.300 (1.5x) |" in lines[5]
    assert lines[5].endswith("| - | - | - | 1,000 |")


def test_table_gives_wakeups_per_step_from_voluntary_switches() -> None:
    before = _snap(1.0, 1.0, 0.0, voluntary_switches=100)
    after = _snap(2.0, 2.0, 1.0, voluntary_switches=350)
    row = window("signal", 100, 100, 20, 1000, before, after)
    assert row.wakeups_per_step == pytest.approx(0.25)
    assert table([row]).splitlines()[2].endswith("| 0.25 | 1,000 |")


def _floor(load: str, workers: int, worker_s: float, redis_s: float = 0.02) -> FloorRow:
    return FloorRow(load=load, workers=workers, workflows=200, steps=1000, seconds=1.0,
                    worker_cpu_s=worker_s, redis_cpu_s=redis_s, wakeups=300)


def test_floor_table_compares_each_load_with_its_one_worker_row() -> None:
    rows = [_floor("200 workflows", 1, 0.04), _floor("10/worker", 1, 0.1),
            _floor("200 workflows", 20, 0.16, 0.03), _floor("10/worker", 20, 0.15)]
    lines = floor_table(rows).splitlines()
    assert lines[2] == "| 200 workflows | 1 | 0.040 | 0.020 | 0.30 | 1,000 |"
    assert lines[4] == "| 200 workflows | 20 | 0.160 (4.0x) | 0.030 (1.5x) | 0.30 | 1,000 |"
    assert lines[5] == "| 10/worker | 20 | 0.150 (1.5x) | 0.020 (1.0x) | 0.30 | 1,000 |"


def test_against_floor_sets_our_largest_k_multiple_beside_the_floors() -> None:
    rows = [_row("signal", 1, 0.05, 0.05), _row("signal", 20, 0.15, 0.05),
            _row("signal, 10/worker", 1, 0.1, 0.05), _row("signal, 10/worker", 20, 0.15, 0.05),
            _row("signal, 300 wf", 4, 0.1, 0.1, max_cached=100)]
    floor = [_floor("200 workflows", 1, 0.04), _floor("200 workflows", 20, 0.16),
             _floor("10/worker", 1, 0.1), _floor("10/worker", 20, 0.12)]
    fixed, per_worker = against_floor(rows, floor)
    assert fixed == ("- Worker CPU per step at K=20 against K=1, a fixed total load: engine "
                     "floor 4.0x; redurable signal ~1,000 events 3.0x.")
    assert per_worker.endswith("engine floor 1.2x; redurable signal, 10/worker ~1,000 events 1.5x.")


def test_table_names_the_cache_limit() -> None:
    row = _row("signal, 300 wf", 4, 0.1, 0.1, max_cached=100)
    assert "| 4 (max_cached 100) |" in table([row])


def test_throughput_is_a_fraction_of_the_floor_by_medians() -> None:
    t = Throughput(redurable=[900.0, 1000.0, 500.0], floor=[4000.0, 3000.0, 5000.0])
    assert t.fraction == pytest.approx(0.225)
    assert "**22% of the floor**" in t.line()


def test_replace_section_adds_then_replaces_between_the_markers() -> None:
    meta = {"command": "python -m scripts.bench.fleet --url u", "duration": "1.0 min",
            "date": "d", "git": "abc", "machine": "m", "load": "1 1 1", "workload": "w"}
    rows = [_row("signal", 1, 0.1, 0.05)]
    doc = "# Benchmarks\n\n## What is left\n\n- x\n"
    once = replace_section(doc, section(meta, rows, None))
    assert once.startswith(doc.rstrip("\n"))
    assert once.count(FLEET_BEGIN) == 1 and "python -m scripts.bench.fleet --url u" in once
    kept = once.replace("## Fleet\n", "## Fleet\n\nHow to read it.\n")
    twice = replace_section(kept, section(meta | {"date": "e"}, rows, None))
    assert twice.count(FLEET_BEGIN) == 1 and twice.count(FLEET_END) == 1
    assert "How to read it." in twice and "- date: e;" in twice and "- date: d;" not in twice


def test_progress_slots_keep_the_live_step_only() -> None:
    slots = Slots(3)
    try:
        report_progress(slots.path, 1, 2)
        stamp = slots.stamp(1)
        assert (slots.steps(0), slots.steps(1), slots.steps(2)) == (0, 2, 0)
        report_progress(slots.path, 1, 1)  # a replay of an older step
        assert slots.steps(1) == 2 and slots.stamp(1) == stamp
        report_progress(slots.path, 1, 3)
        assert slots.steps(1) == 3 and slots.stamp(1) >= stamp
    finally:
        slots.close()


def test_command_line() -> None:
    quick = parse_args(["--url", "redis://127.0.0.1:6400", "--quick"])
    assert quick.worker_counts == [1, 2] and quick.event_counts == [100]
    full = parse_args(["--url", "redis://127.0.0.1:6400"])
    assert full.worker_counts == [1, 2, 4, 8, 20] and full.cache_plan == [300, 4, 100]
    assert parse_args(["--url", "redis://127.0.0.1:1", "--cache", "none"]).cache_plan is None
    for bad in (["--cache", "300x4"], ["--workers", "1,x"], ["--events", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["--url", "redis://127.0.0.1:6400", *bad])
    with pytest.raises(SystemExit):
        parse_args(["--url", "redis://10.0.0.1:6379"])
