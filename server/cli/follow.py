"""Following a task to its end: `drover collect`, also used by `trigger --collect`.

The output is read from `/stdout` by offset and written to stdout as raw
bytes, so nothing is decoded, lost or repeated. While the task is pending or
running, a one-line progress display goes to stderr when stderr is a terminal.
The exit status is the task's exit code, or 1 with a message for a task that
did not complete (DESIGN.md 5).
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from typing import Any, BinaryIO, TextIO

from server.cli import render
from server.cli.client import Client, client_of, quote
from server.cli.options import Failure, Subparsers

ACTIVE_STATES = frozenset({"PENDING", "RUNNING"})

# Pause between two polls of an unfinished task that has nothing new. Each poll
# is one small request; shorter shows output sooner but loads the server more.
POLL_SECS = 0.5

# The exit status for a collect the user interrupted (the shell's 128 + SIGINT).
INTERRUPTED = 130


class Progress:
    """A one-line status on a terminal, erased before anything else is written."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._shown = False

    def show(self, text: str) -> None:
        """Replaces the status line (does nothing unless the stream is a terminal)."""
        if self._enabled:
            self._stream.write(f"\r\x1b[K{text}")
            self._stream.flush()
            self._shown = True

    def clear(self) -> None:
        """Erases the status line, if one is shown."""
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `collect`."""
    p = sub.add_parser(
        "collect",
        parents=[parent],
        help="wait for a task, stream its output, exit with its exit code",
        description="Waits for a task to end while streaming its output to stdout, then "
        "exits with the task's exit code (1 with a message if it did not complete). "
        "With --json, prints the final result instead of the output.",
    )
    p.add_argument("task_id", metavar="TASK_ID")
    p.add_argument(
        "--timeout", type=float, metavar="SECS", help="give up after this long (exit status 1)"
    )
    p.set_defaults(run=_collect_command)


def _collect_command(args: argparse.Namespace) -> int:
    return collect(client_of(args), args.task_id, timeout=args.timeout, as_json=args.json)


def collect(client: Client, task_id: str, *, timeout: float | None, as_json: bool) -> int:
    """Waits for a task to end; returns the exit status for `drover`.

    Streams the output unless `as_json`, in which case it prints the final
    result document instead. Raises Failure when `timeout` runs out.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = Progress(sys.stderr)
    try:
        if as_json:
            result = _wait(client, task_id, deadline, progress)
            render.print_json(result)
        else:
            _stream(client, task_id, deadline, sys.stdout.buffer, progress)
            result = client.get(f"/tasks/{quote(task_id)}")
    except KeyboardInterrupt:
        progress.clear()
        render.warn(f"stopped waiting; task {task_id} carries on")
        return INTERRUPTED
    finally:
        progress.clear()
    return exit_status(result)


def _stream(
    client: Client, task_id: str, deadline: float | None, out: BinaryIO, progress: Progress
) -> None:
    """Copies the task's output to `out` until the task has ended and all is read."""
    path = f"/tasks/{quote(task_id)}/stdout"
    started = time.monotonic()
    offset = 0
    at_line_start = True
    while True:
        page = client.get(path, {"offset": offset})
        data = base64.b64decode(page.get("output", ""))
        if data:
            progress.clear()
            out.write(data)
            out.flush()
            offset += len(data)
            at_line_start = data.endswith(b"\n")
        state = str(page.get("state", ""))
        if data and offset < int(page.get("size", 0)):
            continue  # More than one page of output is waiting.
        if state not in ACTIVE_STATES:
            return
        _check_deadline(task_id, state, deadline)
        # Drawing the status line after a partial line would overwrite it.
        if at_line_start:
            waited = render.duration(time.monotonic() - started)
            progress.show(f"{task_id}: {state}, waited {waited}, {render.size(offset)} of output")
        time.sleep(POLL_SECS)


def _wait(
    client: Client, task_id: str, deadline: float | None, progress: Progress
) -> dict[str, Any]:
    """Polls the task's result until it has ended; returns it."""
    started = time.monotonic()
    while True:
        result: dict[str, Any] = client.get(f"/tasks/{quote(task_id)}")
        state = str(result.get("state", ""))
        if state not in ACTIVE_STATES:
            return result
        _check_deadline(task_id, state, deadline)
        progress.show(f"{task_id}: {state}, waited {render.duration(time.monotonic() - started)}")
        time.sleep(POLL_SECS)


def _check_deadline(task_id: str, state: str, deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise Failure(f"gave up waiting: task {task_id} is still {state}")


def exit_status(result: dict[str, Any]) -> int:
    """The task's exit code for a COMPLETED task; 1, with a message on stderr, otherwise."""
    state = str(result.get("state", ""))
    if state == "COMPLETED":
        return shell_status(int(result.get("exit_code") or 0))
    why = [state]
    if result.get("hard_timeout"):
        why.append("(hard timeout)")
    elif result.get("io_timeout"):
        why.append("(I/O timeout)")
    if result.get("started_ts") and state in ("TIMED_OUT", "KILLED"):
        why.append(f"with exit code {result.get('exit_code', '?')}")
    message = f"task {result.get('task_id', '?')} ended {' '.join(why)}"
    if result.get("error"):
        message += f": {result['error']}"
    render.warn(message)
    return 1


def shell_status(code: int) -> int:
    """A task's exit code as a process exit status.

    0-255 are kept; -N (killed by signal N) becomes 128+N as in a shell; any
    other code (a Windows NTSTATUS, say) becomes 1, never a misleading 0.
    """
    if 0 <= code <= 255:
        return code
    if -127 <= code < 0:
        return 128 - code
    return 1
