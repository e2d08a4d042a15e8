"""Task controls: `cancel`, `pause`, `resume`, `restart`, `retry` and `reprioritize`,
each by task ID or by tag selector (`--tag`, with `--dry-run`).

One path serves every control. By ID, each task is changed in turn and
reported; one that fails does not stop the others, but makes the exit
status 1. By tag, one batch call (`POST /api/v1/tasks:<verb>`) changes the
matching tasks; with --dry-run it lists what it would change, and the real
run then changes exactly those unless they changed in between.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from server.cli import render
from server.cli.client import ApiError, Client, client_of, quote
from server.cli.options import Subparsers, UsageError, add_tag_option
from server.cli.tasks import state_label

# What the control's answer for one task says happened.
Describe = Callable[[str, dict[str, Any]], str]


@dataclasses.dataclass(frozen=True)
class Control:
    """One control command: its API verb, help, and how to word its outcomes."""

    verb: str
    help: str
    # "paused": what happened, for "paused 3 task(s)".
    done: str
    # The statuses of tasks a batch of it selects, for --help.
    selects: str


CONTROLS = (
    Control("cancel", "cancel tasks (pending ones; running ones with --kill-running)",
            "canceled", "pending tasks, and running ones with --kill-running"),
    Control("pause", "hold pending tasks; stop running ones (SIGSTOP)", "paused",
            "active tasks not paused yet"),
    Control("resume", "undo pause", "resumed", "paused tasks"),
    Control("restart", "kill the current run and queue the task again", "restarted",
            "running tasks"),
    Control("retry", "create a new task from a finished task's request", "retried",
            "finished tasks that did not succeed and were not retried yet"),
    Control("reprioritize", "change the priority of pending tasks", "reprioritized",
            "pending tasks of another priority"),
)  # fmt: skip


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds the control commands."""
    for control in CONTROLS:
        ids = "[TASK_ID...] PRIORITY" if control.verb == "reprioritize" else "[TASK_ID...]"
        p = sub.add_parser(
            control.verb,
            parents=[parent],
            help=control.help,
            usage=f"%(prog)s [options] ({ids} | --tag KEY:VALUE... [--dry-run])",
            description=f"{control.help[0].upper()}{control.help[1:]}, by ID or by tag. "
            f"By tag, it selects {control.selects}.",
        )
        if control.verb == "reprioritize":
            # Like `mv`: the last argument is the priority, any before it are tasks.
            p.add_argument(
                "task_ids", nargs="+", metavar="TASK_ID", help="... then PRIORITY (0-255)"
            )
        else:
            p.add_argument("task_ids", nargs="*", metavar="TASK_ID")
        add_tag_option(p, "every task with this tag (repeatable: all must match)")
        p.add_argument("--dry-run", action="store_true", help="with --tag: list, change nothing")
        if control.verb == "cancel":
            p.add_argument("--kill-running", action="store_true", help="stop running tasks too")
        p.set_defaults(run=_control, control=control)


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """What the control sends besides the selector (the priority leaves `task_ids`)."""
    if args.control.verb == "cancel":
        return {"kill_running": args.kill_running}
    if args.control.verb == "reprioritize":
        *args.task_ids, priority = args.task_ids
        try:
            args.priority = int(priority)
        except ValueError:
            raise UsageError(f"the priority is a number (0-255), not {priority!r}") from None
        return {"priority": args.priority}
    return {}


def _control(args: argparse.Namespace) -> int:
    control: Control = args.control
    body = _body(args)
    if bool(args.task_ids) == bool(args.tags):
        raise UsageError(
            f"{control.verb} takes task IDs or --tag selectors, not both and not neither"
        )
    if args.dry_run and not args.tags:
        raise UsageError("--dry-run goes with --tag")
    if args.task_ids:
        return each(
            args,
            args.task_ids,
            lambda c, t: c.post(f"/tasks/{quote(t)}:{control.verb}", body),
            _describe(control, args),
        )
    answer: dict[str, Any] = client_of(args).post(
        f"/tasks:{control.verb}", {"tags": args.tags, "dry_run": args.dry_run, **body}
    )
    if args.json:
        render.print_json(answer)
        return 0
    ids = answer.get("task_ids", [])
    new = answer.get("new_task_ids", [])
    for i, task_id in enumerate(ids):
        print(f"{task_id}: retried as {new[i]}" if i < len(new) else task_id)
    what = f"would {control.verb}" if args.dry_run else control.done
    render.warn(f"{what} {len(ids)} task(s)")
    return 0


def _describe(control: Control, args: argparse.Namespace) -> Describe:
    def describe(task_id: str, answer: dict[str, Any]) -> str:
        if control.verb == "cancel":
            if answer.get("canceled"):
                return f"{task_id}: " + ("killing" if answer.get("was_running") else "canceled")
            if answer.get("was_running"):
                return f"{task_id}: running, not canceled (use --kill-running)"
            return f"{task_id}: not canceled (it has ended)"
        if control.verb == "retry":
            return f"{task_id}: retried as {answer.get('task_id', '?')}"
        result = answer.get("task_result", {})
        if control.verb == "reprioritize":
            state = "priority" if answer.get("changed") else "unchanged, priority"
            return f"{task_id}: {state} {result.get('priority', args.priority)}"
        if answer.get("changed"):
            return f"{task_id}: {control.done}"
        return f"{task_id}: unchanged, {state_label(result)}"

    return describe


def each(
    args: argparse.Namespace,
    task_ids: list[str],
    action: Callable[[Client, str], dict[str, Any]],
    describe: Describe,
) -> int:
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
