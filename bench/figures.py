"""Figures the benchmarks report: percentiles, latency summaries, rates, CPU and load.

Standard library only: bench/peer_runner.py imports it too, in the peers'
own venv (bench/.venv-peers), so a peer's percentiles are computed by the
same code as Drover's.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> Json:
    """Count, mean and p50/p95/p99/max of latencies given in seconds, shown in ms."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "mean_ms": round(1000 * sum(seconds) / len(seconds), 3),
        "p50_ms": round(1000 * percentile(seconds, 50), 3),
        "p95_ms": round(1000 * percentile(seconds, 95), 3),
        "p99_ms": round(1000 * percentile(seconds, 99), 3),
        "max_ms": round(1000 * max(seconds), 3),
    }


def median_of_rounds(rounds: Sequence[Json]) -> Json:
    """One latency summary from the summaries of several rounds: each figure's median.

    `count` is the rounds' total. A round's tail moves with the machine
    (other work, the host's scheduling of this virtual machine), so two
    systems measured in alternating rounds are compared on the median of
    their rounds rather than on one window each.
    """
    measured = [r for r in rounds if r.get("count")]
    if not measured:
        return {"count": 0}
    merged: Json = {"count": sum(r["count"] for r in measured)}
    for key in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"):
        merged[key] = round(percentile([r[key] for r in measured], 50), 3)
    merged["p99_ms_by_round"] = [r["p99_ms"] for r in measured]
    return merged


def merge_rounds(rounds: Sequence[Sequence[Json]]) -> list[Json]:
    """Rows of per-rate figures measured in several rounds, merged row by row.

    Latency summaries become their median_of_rounds, numbers their median
    over the rounds; anything else, or a value every round shares (a task
    count stays an int), is the first round's.
    """
    merged = []
    for rows in zip(*rounds, strict=True):
        row: Json = {}
        for key, first in rows[0].items():
            values = [r.get(key) for r in rows]
            if all(v == first for v in values):
                row[key] = first
            elif isinstance(first, dict) and "count" in first:
                row[key] = median_of_rounds(values)
            elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                row[key] = round(percentile(values, 50), 3)
            else:
                row[key] = first
        merged.append(row)
    return merged


def rate(count: float, seconds: float) -> float:
    """count / seconds rounded for a report; 0 for an empty interval."""
    return round(count / seconds, 1) if seconds > 0 else 0.0


def per(amount: float, count: float, scale: float = 1.0, digits: int = 3) -> float | None:
    """scale * amount / count, rounded; None when there is nothing to divide by."""
    return round(scale * amount / count, digits) if count > 0 else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, rounded; None when either is missing or zero."""
    if not ours or not theirs:
        return None
    return round(ours / theirs, 3)


def load_average() -> float:
    """The one-minute load average."""
    return round(os.getloadavg()[0], 2)


def own_cpu_seconds() -> float:
    """CPU seconds (user + system) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stat_fields(stat: str) -> tuple[int, float]:
    """(parent PID, utime + stime in seconds) from the text of a /proc/<pid>/stat."""
    # After the command in parentheses (which may hold spaces) comes field 3.
    fields = stat[stat.rindex(")") + 2 :].split()
    # Field 4 is the parent; fields 14 and 15 of stat(5) are utime and stime.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    return _stat_fields(Path(f"/proc/{pid}/stat").read_text())[1]


def system_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (first line of /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """CPU seconds of `root` and of every live process descended from it, by PID."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        pid = int(entry.name)
        parents[pid], cpu[pid] = _stat_fields(stat)
    mine = {}
    for pid, seconds in cpu.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            mine[pid] = seconds
    return mine


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of a process, in bytes (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class CpuMeter:
    """CPU seconds that some processes use over an interval, as a fraction of a core.

    `pids` are read from /proc; `own` adds this process (through getrusage).
    """

    def __init__(self, pids: Sequence[int] = (), *, own: bool = False) -> None:
        self.pids = list(pids)
        self.own = own
        self.start = self.read()
        self.end: float | None = None

    def read(self) -> float:
        """CPU seconds of the measured processes so far."""
        total = sum(proc_cpu_seconds(pid) for pid in self.pids)
        return total + (own_cpu_seconds() if self.own else 0.0)

    def stop(self) -> None:
        """Ends the interval: later readings give the CPU used up to now."""
        self.end = self.read()

    def seconds(self) -> float:
        """CPU seconds used from the meter's making to its stop (or to now)."""
        return (self.read() if self.end is None else self.end) - self.start

    def busy(self, elapsed: float) -> float:
        """The CPU seconds of the interval over `elapsed` wall seconds."""
        return round(self.seconds() / elapsed, 3) if elapsed > 0 else 0.0
