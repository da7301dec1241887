"""Parsing for the cluster CPU breakdown (scripts/bench/cluster_cpu.py): INFO text as
Redis 7.0 writes it, /proc/PID/status, and the sums over masters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Commands the engine sends itself that its Functions also run (engine/*.py).
CLIENT_SENT = frozenset({"xreadgroup", "xpending", "zrange", "hmget"})
#: The Function calls: their usec holds the commands they run.
FCALLS = frozenset({"fcall", "fcall_ro"})


@dataclass
class CmdStat:
    calls: int = 0
    usec: int = 0


def parse_info(text: str) -> dict[str, str]:
    """`INFO` text -> field -> value (section headers and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if sep:
            out[name] = value
    return out


def parse_commandstats(text: str) -> dict[str, CmdStat]:
    """`INFO commandstats` text -> command (lower case, `client|setname` for a
    subcommand) -> calls and usec."""
    out: dict[str, CmdStat] = {}
    for name, value in parse_info(text).items():
        if not name.startswith("cmdstat_"):
            continue
        fields = dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv)
        out[name.removeprefix("cmdstat_")] = CmdStat(int(fields.get("calls", 0)),
                                                     int(fields.get("usec", 0)))
    return out


def cpu_split(info: Mapping[str, str]) -> tuple[float, float]:
    """(user, sys) CPU seconds of the server process, from parsed `INFO cpu`."""
    return float(info["used_cpu_user"]), float(info["used_cpu_sys"])


def bus_messages(info: Mapping[str, str]) -> int:
    """Cluster bus messages sent and received so far, from parsed `CLUSTER INFO`."""
    return int(info.get("cluster_stats_messages_sent", 0)) + int(
        info.get("cluster_stats_messages_received", 0))


def top_level(stats: Mapping[str, CmdStat], inner: set[str] | frozenset[str]) -> CmdStat:
    """Calls and usec of what the clients sent: every command but those only Functions
    run (`inner`), which INFO commandstats counts under their own names and again inside
    the FCALL's usec."""
    t = CmdStat()
    for name, s in stats.items():
        if name in FCALLS or name not in inner:
            t.calls += s.calls
            t.usec += s.usec
    return t


def summed(stats: Sequence[Mapping[str, CmdStat]]) -> dict[str, CmdStat]:
    """Per command, summed over masters."""
    out: dict[str, CmdStat] = {}
    for per in stats:
        for name, s in per.items():
            t = out.setdefault(name, CmdStat())
            t.calls += s.calls
            t.usec += s.usec
    return out


def parse_switches(status: str) -> tuple[int, int]:
    fields = parse_info(status)
    return (int(fields["voluntary_ctxt_switches"].strip()),
            int(fields["nonvoluntary_ctxt_switches"].strip()))
