"""The cluster CPU breakdown's parsing, sums and report (scripts/bench/info_stats.py,
scripts/bench/cluster_cpu.py) on INFO text as Redis 7.0 writes it: no server."""

from __future__ import annotations

import pytest

from scripts.bench.cluster_cpu import Totals, Window, command_table, parse_args, render
from scripts.bench.info_stats import (
    CmdStat,
    bus_messages,
    cpu_split,
    parse_commandstats,
    parse_info,
    parse_switches,
    summed,
    top_level,
)

COMMANDSTATS = (
    "# Commandstats\r\n"
    "cmdstat_fcall:calls=120,usec=6000,usec_per_call=50.00,rejected_calls=0,failed_calls=1\r\n"
    "cmdstat_hset:calls=300,usec=600,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"
    "cmdstat_xreadgroup:calls=40,usec=400,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n"
    "cmdstat_client|setname:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0\r\n"
    "\r\n"
)


def test_parse_commandstats() -> None:
    stats = parse_commandstats(COMMANDSTATS)
    assert stats == {
        "fcall": CmdStat(120, 6000),
        "hset": CmdStat(300, 600),
        "xreadgroup": CmdStat(40, 400),
        "client|setname": CmdStat(2, 3),
    }


def test_parse_commandstats_empty_after_resetstat() -> None:
    assert parse_commandstats("# Commandstats\r\n") == {}


def test_parse_info_cpu_and_cluster_info() -> None:
    cpu = parse_info("# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n"
                     "used_cpu_sys_children:0.000000\r\n")
    assert cpu_split(cpu) == (2.25, 1.5)
    bus = parse_info("cluster_state:ok\r\ncluster_stats_messages_sent:10\r\n"
                     "cluster_stats_messages_received:7\r\n")
    assert bus_messages(bus) == 17
    # A 1-master cluster with no peer has no message counters at all.
    assert bus_messages(parse_info("cluster_state:ok\r\n")) == 0


def test_parse_switches() -> None:
    status = ("Name:\tredis-server\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\n"
              "nonvoluntary_ctxt_switches:\t34\n")
    assert parse_switches(status) == (1200, 34)


def test_summed_over_masters() -> None:
    a = {"fcall": CmdStat(1, 10), "hset": CmdStat(2, 4)}
    b = {"fcall": CmdStat(3, 30), "xreadgroup": CmdStat(5, 50)}
    assert summed([a, b]) == {"fcall": CmdStat(4, 40), "hset": CmdStat(2, 4),
                              "xreadgroup": CmdStat(5, 50)}
    # The inputs are not changed.
    assert a["fcall"] == CmdStat(1, 10)


def test_top_level_leaves_out_what_functions_run() -> None:
    stats = parse_commandstats(COMMANDSTATS)
    # HSET is run by Functions only: its usec is inside FCALL's already.
    assert top_level(stats, {"hset"}) == CmdStat(120 + 40 + 2, 6000 + 400 + 3)
    assert top_level(stats, set()) == CmdStat(462, 7003)


def _window(steps: int, seconds: float, **cmds: tuple[int, int]) -> Window:
    stats = {k: CmdStat(*v) for k, v in cmds.items()}
    return Window(seconds=seconds, steps=steps, user=[0.0], sys=[0.0], bus=0, reads=0, writes=0,
                  wakeups=0, preempted=0,
                  commands=stats, per_master_commands=[stats])


def test_command_table_per_step_sorted_by_difference() -> None:
    one = [_window(100, 1.0, fcall=(100, 5000), xreadgroup=(10, 100))]
    three = [_window(100, 1.0, fcall=(100, 5200), xreadgroup=(30, 900))]
    rows = command_table(one, three, per="step")
    assert rows[2] == "| xreadgroup | 0.100 | 0.300 | 1.00 | 9.00 | +8.00 |"
    assert rows[3] == "| fcall | 1.000 | 1.000 | 50.00 | 52.00 | +2.00 |"


def test_parse_args() -> None:
    args = parse_args(["--ports", "7440-7443"])
    assert args.port_list == [7440, 7441, 7442, 7443]
    with pytest.raises(SystemExit):
        parse_args(["--ports", "7440-7442"])
    with pytest.raises(SystemExit):
        parse_args(["--ports", "7440-7443", "--shards", "4"])


def test_render_three_deployments() -> None:
    def totals(name: str, masters: int, cpu: float) -> Totals:
        def w(steps: int) -> Window:
            stats = {"fcall": CmdStat(2 * steps, 100 * steps), "hset": CmdStat(steps, steps)}
            return Window(seconds=2.0, steps=steps, user=[cpu / masters] * masters,
                          sys=[0.0] * masters, bus=0, reads=10, writes=10, wakeups=5,
                          preempted=1, commands=stats, per_master_commands=[stats])
        return Totals(name, loaded=[w(1000), w(1000)], idle=[w(0)], alone=[w(0)])

    text = render([totals("1 master", 1, 0.1), totals("3 masters", 3, 0.125),
                   totals("3 masters, all shards on one", 3, 0.11)], {"command": "x"})
    # 0.125 s of CPU over 1000 steps: 125 us per step, 1.25x the 1 master's.
    assert "| Redis CPU us (INFO cpu) | 100.0 | 125.0 | 110.0 | 1.25 (1.25-1.25) " \
        "| 1.10 (1.10-1.10) |" in text
    # HSET is run by a Function: not a top-level call.
    assert "| top-level calls (server) | 2.00 | 2.00 | 2.00 |" in text
    assert text.endswith("- command: x")
