"""`drover results`: the structured results of one task, or of every task a selector
matches (unit results, lint messages and work messages, as in Harbormaster)."""

from __future__ import annotations

import argparse
import collections
from typing import Any

from server.cli import render
from server.cli.client import client_of, quote
from server.cli.options import Subparsers, UsageError
from server.cli.tasks import add_selector, selector

# Unit outcomes that are failures, shown with their details.
FAILED = ("fail", "broken", "unsound")


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `results`."""
    p = sub.add_parser(
        "results",
        parents=[parent],
        help="unit and lint results and work messages of a task, or of tasks by selector",
        usage="%(prog)s [options] (TASK_ID | --tag KEY:VALUE... [--state S] [--pool P])",
    )
    p.add_argument("task_id", nargs="?", metavar="TASK_ID")
    add_selector(p)
    p.set_defaults(run=_results)


def _results(args: argparse.Namespace) -> int:
    chosen = bool(args.tags or args.states or args.pool)
    if bool(args.task_id) == chosen:
        raise UsageError("results takes a task ID or a selector (--tag, --state, --pool), not both")
    client = client_of(args)
    if args.task_id:
        document: dict[str, Any] = client.get(f"/tasks/{quote(args.task_id)}/results")
        items = [document]
    else:
        document = client.get("/tasks:results", selector(args))
        items = document.get("items", [])
    if args.json:
        render.print_json(document)
        return 0
    for i, item in enumerate(items):
        if i:
            print()
        show(item)
    if not items:
        render.warn("no task matches")
    return 0


def counts(values: list[str]) -> str:
    """`2 pass, 1 fail`, most common first."""
    return ", ".join(f"{n} {v}" for v, n in collections.Counter(values).most_common())


def show(results: dict[str, Any]) -> None:
    """One task's results: a summary line, then a table per kind."""
    unit = results.get("unit", [])
    lint = results.get("lint", [])
    work = results.get("work", [])
    summary = [f"{len(unit)} unit" + (f" ({counts([u['result'] for u in unit])})" if unit else "")]
    summary.append(
        f"{len(lint)} lint" + (f" ({counts([x['severity'] for x in lint])})" if lint else "")
    )
    summary.append(f"{len(work)} work")
    print(f"task {results.get('task_id', '?')}: {', '.join(summary)}")
    if unit:
        render.table(
            ["result", "name", "namespace", "duration", "path"],
            [
                [
                    str(u.get("result", "")),
                    str(u.get("name", "")),
                    str(u.get("namespace", "")),
                    f"{u['duration']:.2f}s" if "duration" in u else "",
                    str(u.get("path", "")),
                ]
                for u in unit
            ],
        )
        for u in unit:
            if u.get("result") in FAILED and u.get("details"):
                print(f"--- {u.get('name', '')} ({u['result']}):")
                print(str(u["details"]).rstrip("\n"))
    if lint:
        render.table(
            ["severity", "code", "where", "name", "description"],
            [
                [
                    str(x.get("severity", "")),
                    str(x.get("code", "")),
                    ":".join(
                        str(x[k]) for k in ("path", "line", "char") if x.get(k) not in (None, "")
                    ),
                    str(x.get("name", "")),
                    str(x.get("description", "")).splitlines()[0] if x.get("description") else "",
                ]
                for x in lint
            ],
        )
    for w in work:
        print(f"{render.when(w.get('ts', ''))}  {w.get('message', '')}")
