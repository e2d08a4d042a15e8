"""Task commands: `tasks`, `task`, `summary`, and the controls (`cancel`, `pause`,
`resume`, `restart`, `retry`, `reprioritize`) by task ID, or for `cancel` by tag.

Controls given several IDs act on each in turn and report each; one that
fails does not stop the others, but makes the exit status 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from server.cli import render
from server.cli.client import ApiError, Client, client_of, quote
from server.cli.options import Subparsers, UsageError, tag

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

# Each control: what it does to one task, and how to say what happened.
Action = Callable[[Client, str], dict[str, Any]]
Describe = Callable[[str, dict[str, Any]], str]


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds the task commands."""
    p = sub.add_parser("tasks", parents=[parent], help="list tasks, newest first")
    _add_selector(p)
    p.add_argument("--bot", metavar="BOT_ID", help="only tasks this bot ran")
    p.add_argument("--limit", type=int, metavar="N", help="at most N (1-1000, default 100)")
    p.add_argument("--cursor", help="the next page, as printed by the previous one")
    p.set_defaults(run=_list)

    p = sub.add_parser("task", parents=[parent], help="one task's details; why it is pending")
    p.add_argument("task_id", metavar="TASK_ID")
    p.set_defaults(run=_show)

    p = sub.add_parser(
        "summary", parents=[parent], help="how many tasks are in each state; are all done"
    )
    _add_selector(p)
    p.set_defaults(run=_summary)

    p = sub.add_parser(
        "cancel",
        parents=[parent],
        help="cancel tasks by ID, or every active task with the given tags",
        usage="%(prog)s [options] TASK_ID... | --tag KEY:VALUE... [--dry-run]",
    )
    p.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    p.add_argument(
        "--tag",
        dest="tags",
        action="append",
        type=tag,
        default=[],
        metavar="KEY:VALUE",
        help="only tasks with this tag (repeatable: all must match)",
    )
    p.add_argument("--kill-running", action="store_true", help="stop running tasks too")
    p.add_argument("--dry-run", action="store_true", help="with --tag: list, change nothing")
    p.set_defaults(run=_cancel)

    for name, verb, help_ in (
        ("pause", "pause", "hold pending tasks; stop running ones (SIGSTOP)"),
        ("resume", "resume", "undo pause"),
        ("restart", "restart", "kill the current run and queue the task again"),
        ("retry", "retry", "create a new task from a finished task's request"),
    ):
        p = sub.add_parser(name, parents=[parent], help=help_)
        p.add_argument("task_ids", nargs="+", metavar="TASK_ID")
        p.set_defaults(run=_control, verb=verb)

    p = sub.add_parser("reprioritize", parents=[parent], help="change a pending task's priority")
    p.add_argument("task_id", metavar="TASK_ID")
    p.add_argument("priority", type=int, metavar="PRIORITY", help="0-255, lower runs first")
    p.set_defaults(run=_reprioritize)


def _add_selector(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state",
        dest="states",
        action="append",
        type=str.upper,
        choices=STATES,
        default=[],
        help="only tasks in this state (repeatable)",
    )
    p.add_argument(
        "--tag",
        dest="tags",
        action="append",
        type=tag,
        default=[],
        metavar="KEY:VALUE",
        help="only tasks with this tag (repeatable: all must match)",
    )
    p.add_argument("--pool", help="only tasks of this pool")


def _selector(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {"state": args.states, "tags": args.tags}
    if args.pool:
        query["pool"] = args.pool
    return query


def _list(args: argparse.Namespace) -> int:
    query = _selector(args)
    for option, name in (("bot", "bot_id"), ("limit", "limit"), ("cursor", "cursor")):
        if getattr(args, option) is not None:
            query[name] = getattr(args, option)
    page: dict[str, Any] = client_of(args).get("/tasks", query)
    if args.json:
        render.print_json(page)
        return 0
    render.table(
        ["id", "name", "state", "bot", "exit", "age"],
        [
            [
                str(t["task_id"]),
                str(t.get("name", "")),
                state_label(t),
                str(t.get("bot_id", "")),
                exit_label(t),
                render.age(t.get("created_ts", "")),
            ]
            for t in page.get("items", [])
        ],
    )
    if page.get("cursor"):
        render.warn(f"more: --cursor {page['cursor']}")
    return 0


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
    summary: dict[str, Any] = client_of(args).get("/tasks:summary", _selector(args))
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


def _cancel(args: argparse.Namespace) -> int:
    if bool(args.task_ids) == bool(args.tags):
        raise UsageError("cancel takes task IDs or --tag selectors, not both and not neither")
    if args.dry_run and not args.tags:
        raise UsageError("--dry-run goes with --tag")
    if args.task_ids:
        body = {"kill_running": args.kill_running}
        return each(
            args,
            args.task_ids,
            lambda c, t: c.post(f"/tasks/{quote(t)}:cancel", body),
            _describe_cancel,
        )
    body = {"tags": args.tags, "kill_running": args.kill_running, "dry_run": args.dry_run}
    answer: dict[str, Any] = client_of(args).post("/tasks:cancel", body)
    if args.json:
        render.print_json(answer)
        return 0
    ids = answer.get("task_ids", [])
    for task_id in ids:
        print(task_id)
    render.warn(f"{'would cancel' if args.dry_run else 'canceled'} {len(ids)} task(s)")
    return 0


def _describe_cancel(task_id: str, answer: dict[str, Any]) -> str:
    if answer.get("canceled"):
        return f"{task_id}: " + ("killing" if answer.get("was_running") else "canceled")
    if answer.get("was_running"):
        return f"{task_id}: running, not canceled (use --kill-running)"
    return f"{task_id}: not canceled (it has ended)"


def _control(args: argparse.Namespace) -> int:
    verb: str = args.verb
    return each(
        args, args.task_ids, lambda c, t: c.post(f"/tasks/{quote(t)}:{verb}"), _describe(verb)
    )


def _describe(verb: str) -> Describe:
    def describe(task_id: str, answer: dict[str, Any]) -> str:
        if verb == "retry":
            return f"{task_id}: retried as {answer.get('task_id', '?')}"
        if answer.get("changed"):
            return f"{task_id}: {verb}{'d' if verb.endswith('e') else 'ed'}"
        return f"{task_id}: unchanged, {state_label(answer.get('task_result', {}))}"

    return describe


def _reprioritize(args: argparse.Namespace) -> int:
    priority: int = args.priority

    def describe(task_id: str, answer: dict[str, Any]) -> str:
        state = "priority" if answer.get("changed") else "unchanged, priority"
        return f"{task_id}: {state} {answer.get('task_result', {}).get('priority', priority)}"

    return each(
        args,
        [args.task_id],
        lambda c, t: c.post(f"/tasks/{quote(t)}:reprioritize", {"priority": priority}),
        describe,
    )


def each(args: argparse.Namespace, task_ids: list[str], action: Action, describe: Describe) -> int:
    """Applies `action` to each task, reporting each; returns 1 if any failed.

    With --json, prints one document mapping each ID to the API's answer or error.
    """
    client = client_of(args)
    answers: dict[str, Any] = {}
    failed = False
    for task_id in task_ids:
        try:
            answer = action(client, task_id)
        except ApiError as e:
            failed = True
            answers[task_id] = e.document()
            render.warn(f"{task_id}: {e.message}")
            continue
        answers[task_id] = answer
        if not args.json:
            print(describe(task_id, answer))
    if args.json:
        render.print_json(answers)
    return 1 if failed else 0
