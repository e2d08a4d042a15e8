"""The "Latest figures" table of bench/README.md, from a run_all.py report.

    .venv/bin/python bench/latest_figures.py bench-full.json

Prints Markdown: the command and machine facts, then one row per figure
with its target, so the README's table is always made from one full run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from figures import Json


def _f(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value >= 100:
        value = f"{value:,.0f}"
    elif isinstance(value, float):
        value = f"{value:.3g}"
    return f"{value}{unit}"


def _rows(runs: Json) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if "results" in runs.get("b1", {}):
        drain = runs["b1"]["results"]["drain"]
        rows.append(
            (
                f"B1 drain, {drain['tasks']:,} tasks, {drain['bots']} bots",
                f"{_f(drain['steady_tasks_per_s'])} tasks/s; "
                f"{_f(drain['server_cpu_ms_per_task'])} ms server CPU and "
                f"{_f(drain['http_requests_per_task'])} HTTP requests per task; "
                f"server {_f(drain['server_cpu_busy'])} busy",
                "≥ fastest peer; 2,000 tasks/s first",
            )
        )
        floor = runs["b1"]["results"].get("http_floor")
        if floor is not None:
            rows.append(
                (
                    "B1 HTTP floor: the same drain, a server that only answers",
                    f"{_f(floor['steady_tasks_per_s'])} tasks/s; "
                    f"{_f(floor['server_cpu_ms_per_task'])} ms server CPU per task; "
                    f"bench client {_f(floor['client_cpu_busy'])} busy; "
                    f"Drover's drain x{_f(floor['drover_ratio'])} of it",
                    "",
                )
            )
        for row in runs["b1"]["results"].get("open_loop", {}).get("rates", []):
            rows.append(
                (
                    f"B1 open loop at {_f(row['target_tasks_per_s'])} tasks/s",
                    f"{_f(row['completed_per_s'])} tasks/s completed; "
                    f"start p99 {_f(row['submit_to_start'].get('p99_ms'), ' ms')}",
                    "",
                )
            )
    services = runs.get("b1s", {}).get("results")
    if services is not None:
        rows.append(
            (
                f"B1 services in-process, {services['tasks']:,} tasks, no HTTP",
                f"{_f(services['cpu_us_per_task'])} µs CPU per task "
                f"(poll {_f(services['poll']['cpu_us_per_task'])}, "
                f"task_update {_f(services['task_update']['cpu_us_per_task'])}), "
                f"{_f(services['sqlite_us_per_task'])} µs of it in SQLite",
                "",
            )
        )
    for row in runs.get("b2", {}).get("results", {}).get("rates", []):
        lat = row["submit_to_start"]
        rows.append(
            (
                f"B2 submit-to-start at {_f(row['target_tasks_per_s'])} tasks/s",
                f"p50 {_f(lat.get('p50_ms'), ' ms')}, p95 {_f(lat.get('p95_ms'), ' ms')}, "
                f"p99 {_f(lat.get('p99_ms'), ' ms')}",
                "p99 ≤ Celery's; < 5 ms first",
            )
        )
    cycles = runs.get("b2s", {}).get("results")
    if cycles is not None:
        ours, theirs = cycles["handed_over"], cycles["claimed"]
        rows.append(
            (
                "B2 in-process: create to the held poll's `run`",
                f"handed over p50 {_f(ours['create_to_run']['p50_ms'], ' ms')}, "
                f"{_f(ours['cpu_us_per_cycle'])} µs CPU per task; claimed instead "
                f"p50 {_f(theirs['create_to_run']['p50_ms'], ' ms')}, "
                f"{_f(theirs['cpu_us_per_cycle'])} µs (x{_f(cycles['handed_over_cpu_ratio'])})",
                "",
            )
        )
    for fleet in runs.get("b3", {}).get("results", {}).get("fleets", []):
        rows.append(
            (
                f"B3 {fleet['bots']:,} idle bots, {_f(fleet['window_secs'])} s",
                f"{_f(100 * fleet['server_core_fraction'], '%')} of a core; "
                f"{_f(fleet['requests_per_s'])} requests/s, "
                f"{_f(fleet['server_cpu_us_per_request'], ' µs')} server CPU each; "
                f"RSS {_f(fleet['server_rss_mib'], ' MiB')}",
                "< 10% of a core at 10,000",
            )
        )
    for depth in runs.get("b4", {}).get("results", {}).get("depths", []):
        poll = depth["poll"]
        rows.append(
            (
                f"B4 poll, {depth['depth']:,} pending",
                f"p50 {_f(poll.get('p50_ms'), ' ms')}, p99 {_f(poll.get('p99_ms'), ' ms')} "
                f"(x{_f(depth['p50_ratio_to_0'])}, x{_f(depth['p99_ratio_to_0'])} of empty)"
                + (
                    f"; tasks:count {_f(depth['count_ms'], ' ms')}, "
                    f"tasks:summary {_f(depth['summary_ms'], ' ms')}"
                    if "count_ms" in depth
                    else ""
                ),
                "within 1.5x",
            )
        )
    if "results" in runs.get("b5", {}):
        mem = runs["b5"]["results"]
        rows.append(
            (
                f"B5 memory, {mem['tasks']:,} tasks, {mem['bots']:,} bots",
                f"{_f(mem['bytes_per_pending_task'], ' B')} per pending task, "
                f"{_f(mem['bytes_per_connected_bot'], ' B')} per connected bot",
                "< 2 KiB per task",
            )
        )
    rows += _peer_rows(runs.get("peers", {}).get("results", {}))
    return rows


def _peer_rows(peers: Json) -> list[tuple[str, str, str]]:
    if not peers:
        return []
    drain = peers["drover"]["drain"]
    rows = [
        (
            f"Peers run: Drover drain, {drain['tasks']:,.0f} tasks",
            f"{_f(drain['steady_tasks_per_s'])} tasks/s, "
            f"{_f(drain['server_cpu_ms_per_task'])} ms server CPU per task",
            "",
        )
    ]
    for row in peers["drover"]["latency"]["rates"]:
        rows.append(
            (
                f"Peers run: Drover p99 at {_f(row['target_tasks_per_s'])} tasks/s",
                _f(row["submit_to_start"].get("p99_ms"), " ms"),
                "",
            )
        )
    for name, peer in peers["peers"].items():
        rows.append(
            (
                f"{name} {peer['version']} drain",
                f"{_f(peer['drain']['steady_tasks_per_s'])} tasks/s, "
                f"{_f(peer['drain'].get('worker_cpu_ms_per_task'))} ms worker CPU per task; "
                f"Drover/peer x{_f(peer['drover_drain_over_peer'])} (tasks/s), "
                f"x{_f(peer.get('drover_cpu_per_task_over_peer'))} (CPU per task)",
                "",
            )
        )
        p99s = ", ".join(
            f"{_f(row['target_tasks_per_s'])}/s: {_f(row['submit_to_start'].get('p99_ms'), ' ms')}"
            f" (Drover x{_f(row['drover_p99_over_peer_p99'])})"
            for row in peer["latency"]
        )
        rows.append((f"{name} submit-to-start p99", p99s, ""))
    return rows


def table(doc: Json) -> str:
    """The Markdown of the figures of one run_all.py report."""
    runs = doc["runs"]
    machine = {name: run.get("machine", {}) for name, run in runs.items()}
    loads = ", ".join(
        f"{name} {m.get('load_1m_during_mean')} (others {m.get('other_work_cores_mean', 'n/a')})"
        for name, m in machine.items()
    )
    versions = doc["versions"]
    lines = [
        f"Command: `{doc['command']}` at commit {versions['drover_commit']} "
        f"(Python {versions['python']}, aiohttp {versions['aiohttp']}, {versions['cpus']} cores).",
        "",
        f"Load average during each script (mean of 1-minute samples; in brackets the cores "
        f"other work used on average): {loads}.",
        "",
        "| Figure | Measured | Target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _rows(runs)]
    return "\n".join(lines)


def main() -> None:
    """Prints the table of the report named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path, help="a run_all.py --out file")
    doc: Json = json.loads(parser.parse_args().report.read_text())
    print(table(doc))


if __name__ == "__main__":
    main()
