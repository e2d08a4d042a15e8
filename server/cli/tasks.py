"""Task commands that read: `tasks`, `task` and `summary` (the controls are in
controls.py, the results in results.py)."""

from __future__ import annotations

import argparse
from typing import Any

from server.cli import render
from server.cli.client import client_of, quote
from server.cli.options import Subparsers, add_page_options, add_tag_option

STATES = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "TIMED_OUT",
    "KILLED",
    "BOT_DIED",
    "EXPIRED",
    "CANCELED",
    "NO_RESOURCE",
    "CLIENT_ERROR",
)


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds the task commands."""
    p = sub.add_parser("tasks", parents=[parent], help="list tasks, newest first")
    add_selector(p)
    p.add_argument("--bot", metavar="BOT_ID", help="only tasks this bot ran")
    add_page_options(p)
    p.set_defaults(run=_list)

    p = sub.add_parser("task", parents=[parent], help="one task's details; why it is pending")
    p.add_argument("task_id", metavar="TASK_ID")
    p.set_defaults(run=_show)

    p = sub.add_parser(
        "summary", parents=[parent], help="how many tasks are in each state; are all done"
    )
    add_selector(p)
    p.set_defaults(run=_summary)


def add_selector(p: argparse.ArgumentParser) -> None:
    """The options that select tasks: `--state`, `--tag` and `--pool`."""
    p.add_argument(
        "--state",
        dest="states",
        action="append",
        type=str.upper,
        choices=STATES,
        default=[],
        help="only tasks in this state (repeatable)",
    )
    add_tag_option(p, "only tasks with this tag (repeatable: all must match)")
    p.add_argument("--pool", help="only tasks of this pool")


def selector(args: argparse.Namespace) -> dict[str, Any]:
    """The query parameters of `add_selector`'s options."""
    query: dict[str, Any] = {"state": args.states, "tags": args.tags}
    if args.pool:
        query["pool"] = args.pool
    return query


def _list(args: argparse.Namespace) -> int:
    query = selector(args)
    for option, name in (("bot", "bot_id"), ("limit", "limit"), ("cursor", "cursor")):
        if getattr(args, option) is not None:
            query[name] = getattr(args, option)
    return render.listing(
        client_of(args).get("/tasks", query),
        args.json,
        ["id", "name", "state", "bot", "exit", "age"],
        lambda t: [
            str(t["task_id"]),
            str(t.get("name", "")),
            state_label(t),
            str(t.get("bot_id", "")),
            exit_label(t),
            render.age(t.get("created_ts", "")),
        ],
    )


def state_label(result: dict[str, Any]) -> str:
    """The state, with `paused` or `killing` when they apply."""
    extra = [flag for flag in ("paused", "killing") if result.get(flag)]
    return str(result.get("state", "")) + (f" ({', '.join(extra)})" if extra else "")


def exit_label(result: dict[str, Any]) -> str:
    """The exit code of a run that ended; '' when there is none to show."""
    if not result.get("started_ts") or result.get("state") in ("PENDING", "RUNNING"):
        return ""
    return str(result.get("exit_code", ""))


def _show(args: argparse.Namespace) -> int:
    client = client_of(args)
    path = f"/tasks/{quote(args.task_id)}"
    result: dict[str, Any] = client.get(path)
    request: dict[str, Any] = client.get(f"{path}/request")
    pending: dict[str, Any] | None = None
    if result.get("state") == "PENDING":
        pending = client.get(f"{path}/pending")
    if args.json:
        render.print_json({"result": result, "request": request, "pending": pending})
        return 0
    slices = request.get("task_slices", [])
    current = slices[int(result.get("current_task_slice", 0))] if slices else {}
    props = current.get("properties", {})
    render.fields(
        [
            ("task", str(result.get("task_id", ""))),
            ("name", str(result.get("name", ""))),
            ("state", state_label(result)),
            ("exit code", exit_label(result)),
            ("error", str(result.get("error", ""))),
            ("bot", str(result.get("bot_id", ""))),
            ("try", str(result.get("try_number", ""))),
            ("priority", str(result.get("priority", ""))),
            ("user", str(result.get("user", ""))),
            ("command", " ".join(props.get("command", []))),
            ("dimensions", render.pairs(props.get("dimensions", []))),
            ("tags", " ".join(result.get("tags", []))),
            ("created", render.when(result.get("created_ts", ""))),
            ("started", render.when(result.get("started_ts", ""))),
            ("completed", render.when(result.get("completed_ts", ""))),
            ("duration", f"{result['duration']:.1f}s" if result.get("duration") else ""),
            ("output", render.size(int(result.get("output_size") or 0))),
            ("retry of", str(result.get("retry_of", ""))),
            ("deduped from", str(result.get("deduped_from", ""))),
        ]
    )
    if pending:
        _explain_pending(pending)
    return 0


def _explain_pending(pending: dict[str, Any]) -> None:
    """Why a task is still pending, slice by slice."""
    print("why pending:" + (" the task is paused" if pending.get("paused") else ""))
    for s in pending.get("slices", []):
        counts = ", ".join(
            f"{s.get(f'{kind}_bots', 0)} {kind}" for kind in ("idle", "busy", "quarantined", "dead")
        )
        current = " (current)" if s.get("current") else ""
        print(f"  slice {s.get('index', 0)}{current}: {render.pairs(s.get('dimensions', []))}")
        print(f"    matching bots: {counts}")
        if s.get("unmatched_dimensions"):
            print(f"    no live bot has: {' '.join(s['unmatched_dimensions'])}")
        if s.get("current"):
            print(f"    tasks ahead in the queue: {s.get('queue_position', 0)}")
        if s.get("expiration_ts"):
            print(f"    expires: {render.when(s['expiration_ts'])}")


def _summary(args: argparse.Namespace) -> int:
    summary: dict[str, Any] = client_of(args).get("/tasks:summary", selector(args))
    if args.json:
        render.print_json(summary)
        return 0
    render.table(
        ["state", "count"],
        [[str(s["state"]), str(s["count"])] for s in summary.get("states", [])],
    )
    print(f"total {summary.get('total', 0)}", end="; ")
    print(f"all done: {_yes(summary.get('all_done'))}", end="; ")
    print(f"all succeeded: {_yes(summary.get('all_succeeded'))}")
    return 0


def _yes(value: object) -> str:
    return "yes" if value else "no"
