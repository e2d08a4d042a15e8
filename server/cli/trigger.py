"""`drover trigger`: build a NewTaskRequest from the command line and create it.

The options describe one task slice (command, dimensions, env, timeouts);
`--slice-json` adds fallback slices written as JSON TaskSlice documents, in
order after it. With `--collect` the command then follows the task like
`drover collect`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from typing import Any

from server.cli import follow, render
from server.cli.client import client_of
from server.cli.options import (
    Failure,
    Subparsers,
    UsageError,
    add_dimension_option,
    add_tag_option,
    key_value,
)

# The pool a task goes to when neither --pool nor -d pool=... names one: the
# quickstart config's only pool.
DEFAULT_POOL = "default"


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `trigger`."""
    p = sub.add_parser(
        "trigger",
        parents=[parent],
        help="create a task (and with --collect, wait for it)",
        usage="%(prog)s [options] -- COMMAND...",
        description="Creates a task that runs COMMAND on a bot and prints its ID on stdout. "
        "With --collect, waits for it instead, streams its output to stdout and exits "
        "with its exit code.",
    )
    p.add_argument("--name", help="the task's name (default: the command's program)")
    p.add_argument(
        "--pool",
        help=f"the pool to run in (default: $DROVER_POOL or {DEFAULT_POOL!r})",
    )
    add_dimension_option(
        p, "a dimension the bot must have (repeatable; VALUE may list alternatives a|b)"
    )
    add_tag_option(p, "a tag of the task, to select it by later (repeatable)")
    p.add_argument("--env", action="append", type=key_value, default=[], metavar="NAME=VALUE")
    p.add_argument("--priority", type=int, help="0-255, lower runs first (server default 200)")
    p.add_argument("--hard-timeout", type=int, metavar="SECS", help="execution timeout")
    p.add_argument("--io-timeout", type=int, metavar="SECS", help="timeout without output")
    p.add_argument("--grace-period", type=int, metavar="SECS", help="SIGTERM to SIGKILL")
    p.add_argument("--expiration", type=int, metavar="SECS", help="how long it may stay pending")
    p.add_argument(
        "--wait-for-capacity",
        action="store_true",
        help="stay pending even if no bot can run it yet",
    )
    p.add_argument("--idempotent", action="store_true", help="reuse a recent identical result")
    p.add_argument("--max-retries", type=int, metavar="N", help="retries when its bot dies")
    p.add_argument("--user", default=os.environ.get("USER", ""), help="default: $USER")
    p.add_argument(
        "--service-account",
        metavar="EMAIL",
        help="the account the task's tokens stand for (its pools must allow it)",
    )
    p.add_argument(
        "--slice-json",
        dest="slice_files",
        action="append",
        type=pathlib.Path,
        default=[],
        metavar="FILE",
        help="a fallback TaskSlice as JSON (repeatable)",
    )
    p.add_argument("--collect", action="store_true", help="wait, stream the output, exit with it")
    p.add_argument("task_command", nargs="*", metavar="COMMAND", help="after --")
    p.set_defaults(run=_trigger)


def _trigger(args: argparse.Namespace) -> int:
    body = build_request(args)
    client = client_of(args)
    answer: dict[str, Any] = client.post("/tasks", body)
    task_id = str(answer["task_id"])
    if args.collect:
        render.warn(f"task {task_id}: {client.task_url(task_id)}")
        return follow.collect(client, task_id, timeout=None, as_json=args.json)
    if args.json:
        render.print_json(answer)
    else:
        print(task_id)
        render.warn(f"task {task_id}: {client.task_url(task_id)}")
    return 0


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The NewTaskRequest JSON that `trigger`'s options describe."""
    slices = [json_slice(path) for path in args.slice_files]
    if args.task_command:
        slices.insert(0, _command_slice(args))
    elif not slices:
        raise UsageError("trigger needs a command after '--' (or --slice-json FILE)")
    first = slices[0].get("properties", {}).get("command") or ["task"]
    body: dict[str, Any] = {
        "name": args.name or os.path.basename(str(first[0])),
        "task_slices": slices,
        "tags": args.tags,
        "user": args.user,
    }
    if args.priority is not None:
        body["priority"] = args.priority
    if args.max_retries is not None:
        body["max_retries"] = args.max_retries
    if args.service_account:
        body["service_account"] = args.service_account
    return body


def _command_slice(args: argparse.Namespace) -> dict[str, Any]:
    dimensions: list[tuple[str, str]] = list(args.dimensions)
    if not any(key == "pool" for key, _ in dimensions):
        pool = args.pool or os.environ.get("DROVER_POOL") or DEFAULT_POOL
        dimensions.insert(0, ("pool", pool))
    elif args.pool:
        raise UsageError("give the pool once: --pool or -d pool=..., not both")
    properties: dict[str, Any] = {
        "command": args.task_command,
        "dimensions": [{"key": k, "value": v} for k, v in dimensions],
        "env": [{"key": k, "value": v} for k, v in args.env],
        "idempotent": args.idempotent,
    }
    for option, field in (
        ("hard_timeout", "execution_timeout_secs"),
        ("io_timeout", "io_timeout_secs"),
        ("grace_period", "grace_period_secs"),
    ):
        if getattr(args, option) is not None:
            properties[field] = getattr(args, option)
    slice_: dict[str, Any] = {
        "properties": properties,
        "wait_for_capacity": args.wait_for_capacity,
    }
    if args.expiration is not None:
        slice_["expiration_secs"] = args.expiration
    return slice_


def json_slice(path: pathlib.Path) -> dict[str, Any]:
    """A TaskSlice read from a JSON file (the server checks its fields)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Failure(f"cannot read the slice in {path}: {e}") from e
    if not isinstance(document, dict):
        raise Failure(
            f"{path}: a slice is a JSON object (a TaskSlice), not {type(document).__name__}"
        )
    return document
