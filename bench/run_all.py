"""Runs every Drover benchmark in turn and prints one JSON document with all reports.

Small sizes by default (a smoke run of a few minutes); `--full` passes
`--full` to each script for the sizes of the issue (much longer: a million
pending tasks in B4, ten thousand bots in B3 and B5). Each script runs in
its own process under a time cap; a script that fails is reported with its
exit code and the end of its error output, and the others still run.

    .venv/bin/python bench/run_all.py [--full] [--only b1 b2 ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from figures import load_average
from reports import versions

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "b1": "b1_throughput.py",
    "b1s": "b1_services.py",
    "b2": "b2_latency.py",
    "b2s": "b2_services.py",
    "b3": "b3_idle.py",
    "b4": "b4_poll_depth.py",
    "b5": "b5_memory.py",
    "peers": "peers.py",
}
# Hard caps per script, in seconds: smoke and full.
SMOKE_CAP = 900.0
FULL_CAP = 3600.0
# A script past its cap has this long to stop its processes before they are killed.
KILL_GRACE_SECS = 60.0


def run_script(name: str, full: bool) -> dict[str, Any]:
    """Runs one bench script; returns its JSON report or what went wrong."""
    cap = FULL_CAP if full else SMOKE_CAP
    command = [sys.executable, str(HERE / SCRIPTS[name]), "--max-secs", str(cap)]
    if full:
        command.append("--full")
    start = time.perf_counter()
    # Its own process group, so that a script past even its own cap goes with
    # the server and client processes it started.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=cap + KILL_GRACE_SECS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"killed after {cap + KILL_GRACE_SECS} s"}
    secs = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr": err[-3000:], "secs": secs}
    report: dict[str, Any] = json.loads(out)
    report["wall_secs"] = secs
    return report


def _machine(runs: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: run.get("machine", {}).get(key) for name, run in runs.items()}


def main() -> None:
    """Parses the command line, runs the chosen scripts, prints the combined report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's sizes")
    parser.add_argument("--only", nargs="*", choices=sorted(SCRIPTS), help="run only these")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    load0 = load_average()
    runs = {}
    for name in args.only or list(SCRIPTS):
        print(f"running {SCRIPTS[name]} ...", file=sys.stderr, flush=True)
        runs[name] = run_script(name, args.full)
    doc = {
        "benchmark": "all",
        "command": " ".join(["python", *sys.argv]),
        "full": args.full,
        "versions": versions(),
        "load_1m_before": load0,
        "load_1m_after": load_average(),
        # Each script's own samples of the load while it ran (reports.LoadSampler).
        "load_1m_during_mean_by_script": _machine(runs, "load_1m_during_mean"),
        "other_work_cores_mean_by_script": _machine(runs, "other_work_cores_mean"),
        "preliminary": any(
            run.get("machine", {}).get("preliminary", True) for run in runs.values()
        ),
        "runs": runs,
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
