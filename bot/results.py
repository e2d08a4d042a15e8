"""Structured results a task writes to its results file, and the rules they follow.

The task runner gives each task a file path in $DROVER_RESULTS_FILE. The
task may append to it, while it runs, JSON lines: one object per line, with
any of these keys (the shape of the API's ReportResults, after
Harbormaster):

  {"unit": [{"name": "test_a", "result": "pass", "duration": 0.25}]}
  {"lint": [{"name": "unused import", "code": "F401", "severity": "warning",
             "path": "a.py", "line": 3, "char": 1}]}
  {"work": "compiled 3 of 10 targets"}

A unit result has `name` and `result` (pass, fail, skip, broken or
unsound), and may have `namespace`, `engine`, `path`, `details` (strings)
and `duration` (seconds). A lint result has `name`, `code` and `severity`
(advice, autofix, warning, error or disabled), and may have `path`,
`description` (strings), `line` and `char` (whole numbers). `work` is a
progress message. The runner sends complete lines as they appear with its
task_updates (the last line needs no newline once the task has exited);
they can be read back with `drover results` or the API.

A line that breaks the rules, and a file that cannot be read, never affect
the task: the line is skipped and a work message says which line and why.
The rules are the server's own (server/scheduler/reports.py checks with
`check_report`), so the runner never sends what the server would refuse: a
refused task_update would end the run. Standard library only, Python 3.9.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

log = logging.getLogger("drover_bot.results")

ENV_VAR = "DROVER_RESULTS_FILE"
FILE_NAME = "task_results.jsonl"

UNIT_RESULTS = ("pass", "fail", "skip", "broken", "unsound")
LINT_SEVERITIES = ("advice", "autofix", "warning", "error", "disabled")
# Bounds what one report may hold, so a runaway task cannot flood the store.
MAX_ITEMS_PER_REPORT = 10_000
MAX_TEXT = 4096
MAX_DETAILS = 64 * 1024

_UNIT_TEXT = {"namespace": MAX_TEXT, "engine": MAX_TEXT, "path": MAX_TEXT, "details": MAX_DETAILS}
_LINT_TEXT = {"path": MAX_TEXT, "description": MAX_DETAILS}

# What one task_update carries at most: a line bigger than this is refused.
# With the largest output chunk (~334 KB in base64) the body stays well
# under the server's 4 MiB limit.
MAX_BATCH_ITEMS = 1000
MAX_BATCH_BYTES = 1024 * 1024
# Past this many items in all, the rest of the file is ignored (and said so).
MAX_TOTAL_ITEMS = 100_000
# How much of the file one read looks at; a longer line is refused.
READ_SIZE = 2 * MAX_BATCH_BYTES
# After this many bad lines the rest of the file is ignored (and said so).
MAX_BAD_LINES = 100


def _text(item: Mapping[str, Any], key: str, where: str, limit: int, required: bool) -> None:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key} must be a string")
    if required and not value.strip():
        raise ValueError(f"{where}.{key} is required")
    if len(value) > limit:
        raise ValueError(f"{where}.{key} is longer than {limit} characters")


def _number(item: Mapping[str, Any], key: str, where: str, whole: bool) -> None:
    value = item.get(key)
    if value is None:
        return
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{where}.{key} must be a {'whole ' if whole else ''}number")
    if value < 0:
        raise ValueError(f"{where}.{key} must not be negative")


def _object(item: Any, where: str, known: Tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(item) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    return item


def check_unit(item: Any, where: str) -> None:
    """Raises ValueError, naming the field, unless `item` is a valid unit result."""
    unit = _object(item, where, ("name", "result", "duration", *_UNIT_TEXT))
    _text(unit, "name", where, MAX_TEXT, required=True)
    if unit.get("result") not in UNIT_RESULTS:
        raise ValueError(
            f"{where}.result {unit.get('result')!r} is not one of {', '.join(sorted(UNIT_RESULTS))}"
        )
    _number(unit, "duration", where, whole=False)
    for key, limit in _UNIT_TEXT.items():
        _text(unit, key, where, limit, required=False)


def check_lint(item: Any, where: str) -> None:
    """Raises ValueError, naming the field, unless `item` is a valid lint result."""
    lint = _object(item, where, ("name", "code", "severity", "line", "char", *_LINT_TEXT))
    _text(lint, "name", where, MAX_TEXT, required=True)
    _text(lint, "code", where, MAX_TEXT, required=True)
    if lint.get("severity") not in LINT_SEVERITIES:
        raise ValueError(
            f"{where}.severity {lint.get('severity')!r} is not one of "
            f"{', '.join(sorted(LINT_SEVERITIES))}"
        )
    for key in ("line", "char"):
        _number(lint, key, where, whole=True)
    for key, limit in _LINT_TEXT.items():
        _text(lint, key, where, limit, required=False)


def check_work(item: Any, where: str) -> None:
    """Raises ValueError unless `item` is a work message: {ts, message}."""
    work = _object(item, where, ("ts", "message"))
    if "ts" not in work:
        raise ValueError(f"{where}.ts is required")
    _number(work, "ts", where, whole=False)
    _text(work, "message", where, MAX_TEXT, required=True)


_CHECKS: Dict[str, Callable[[Any, str], None]] = {
    "unit": check_unit,
    "lint": check_lint,
    "work": check_work,
}


def check_report(report: Any) -> None:
    """Raises ValueError naming the first bad field of a report {unit, lint, work}.

    The one definition of the rules, used by the server for every report it
    accepts and by the runner before it sends one.
    """
    if not isinstance(report, dict):
        raise ValueError("a report must be an object")
    unknown = sorted(set(report) - set(_CHECKS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; a report has unit, lint and work")
    count = 0
    for kind, check in _CHECKS.items():
        items = report.get(kind) or []
        if not isinstance(items, list):
            raise ValueError(f"{kind} must be a list")
        count += len(items)
        for i, item in enumerate(items):
            check(item, f"{kind}[{i}]")
    if count > MAX_ITEMS_PER_REPORT:
        raise ValueError(f"a report holds at most {MAX_ITEMS_PER_REPORT} items, not {count}")


def parse_line(text: str, now: float) -> Dict[str, List[Any]]:
    """The report one line of a results file stands for. Raises ValueError saying why not."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"a line is a JSON object, not {type(value).__name__}")
    unknown = sorted(set(value) - set(_CHECKS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; a line has unit, lint and work")
    report: Dict[str, List[Any]] = {
        "unit": value.get("unit") or [],
        "lint": value.get("lint") or [],
        "work": [],
    }
    work = value.get("work")
    if work is not None:
        if not isinstance(work, str):
            raise ValueError("work must be a string (a progress message)")
        report["work"] = [{"ts": now, "message": work}]
    check_report(report)
    return report


def _size(report: Mapping[str, List[Any]]) -> Tuple[int, int]:
    """(items, bytes as sent) of a report."""
    items = sum(len(v) for v in report.values())
    return items, len(json.dumps(report, separators=(",", ":")))


class _Batch:
    """The reports of consecutive lines, from `start` to `end` in the file."""

    def __init__(self, start: int, line: int, total: int, bad: int) -> None:
        self.start = self.end = start
        self.line = line
        self.total = total
        self.bad = bad
        self.report: Dict[str, List[Any]] = {"unit": [], "lint": [], "work": []}
        self.items = 0
        self.bytes = 0
        self.stopped = False

    @property
    def is_empty(self) -> bool:
        return not self.items

    def problem(self, message: str, now: float) -> None:
        """Records, as a work message, why part of the file is not used."""
        text = f"drover_bot: results file {message}"[:MAX_TEXT]
        self.report["work"].append({"ts": now, "message": text})
        self.items += 1

    def take(self, raw: bytes, now: float) -> bool:
        """Adds one line's report (or its problem); False when the batch is full."""
        problem = ""
        parsed: Optional[Dict[str, List[Any]]] = None
        try:
            parsed = parse_line(raw.decode("utf-8"), now) if raw.strip() else None
        except UnicodeDecodeError:
            problem = "is not UTF-8"
        except ValueError as e:
            problem = str(e)
        n, size = _size(parsed) if parsed else (1, 0)
        if parsed and (n > MAX_BATCH_ITEMS or size > MAX_BATCH_BYTES):
            parsed, n, size = None, 1, 0
            problem = f"holds more than {MAX_BATCH_ITEMS} items or {MAX_BATCH_BYTES} bytes"
        if self.items and (self.items + n > MAX_BATCH_ITEMS or self.bytes + size > MAX_BATCH_BYTES):
            return False
        self.line += 1
        if parsed:
            if self.total + n > MAX_TOTAL_ITEMS:
                self.problem(f"has more than {MAX_TOTAL_ITEMS} items; the rest is ignored", now)
                self.stopped = True
                return False
            for kind, values in parsed.items():
                self.report[kind].extend(values)
            self.items, self.bytes, self.total = self.items + n, self.bytes + size, self.total + n
        elif problem:
            self.bad += 1
            self.problem(f"line {self.line}: {problem}; line skipped", now)
            if self.bad >= MAX_BAD_LINES:
                self.problem(f"has {MAX_BAD_LINES} bad lines; the rest is ignored", now)
                self.stopped = True
                return False
        return True


class ResultsFile:
    """The task's results file, read as it grows, from what the server already has.

    `peek` returns the next batch to send: the reports of the complete lines
    after the acknowledged offset, problems included as work messages. The
    same batch comes back until `ack` says the server has it, so a resent
    task_update carries the same results at the same offset, which the
    server counts once.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        # Where the next batch starts: the server has everything before it.
        self.offset = 0
        self._line = 0
        self._total = 0
        self._bad = 0
        self._stopped = False
        # Inside a line longer than READ_SIZE, which is dropped up to its newline.
        self._skipping = False
        self._pending: Optional[_Batch] = None
        # (offset, file size) when a read found nothing to send: until the
        # file grows, there is no need to read it again (the runner asks often).
        self._idle: Optional[Tuple[int, int]] = None
        self._size = 0

    def peek(self, final: bool = False) -> Optional[Tuple[int, Dict[str, List[Any]]]]:
        """(offset, report) of the next batch to send, or None when there is nothing new.

        With `final` (the task has exited) a last line without a newline
        counts too. Never raises: whatever goes wrong must not cost the task,
        so a bug here only stops the reading.
        """
        if self._pending is None:
            try:
                self._pending = self._next_batch(final)
            except Exception:
                log.exception(
                    "reading %s failed; the task's further results are dropped", self.path
                )
                self._stopped = True
        if self._pending is None:
            return None
        return self._pending.start, self._pending.report

    def ack(self) -> None:
        """The server has the batch of the last `peek`."""
        if self._pending is not None:
            self._advance(self._pending)
            self._pending = None

    def _advance(self, batch: _Batch) -> None:
        self.offset, self._line, self._total, self._bad = (
            batch.end,
            batch.line,
            batch.total,
            batch.bad,
        )

    def _next_batch(self, final: bool) -> Optional[_Batch]:
        if self._stopped:
            return None
        batch = _Batch(self.offset, self._line, self._total, self._bad)
        data = self._load(batch, final)
        if data is not None:
            self._take_lines(batch, data, final)
        self._stopped = self._stopped or batch.stopped
        if batch.is_empty:
            # Blank lines at most: move past them without a round trip.
            self._advance(batch)
            self._idle = (self.offset, self._size)
            return None
        return batch

    def _load(self, batch: _Batch, final: bool) -> Optional[bytes]:
        """The file's bytes from the batch's start on (at most READ_SIZE); None when
        there is no file, or nothing new since the last read found nothing."""
        try:
            with open(self.path, "rb") as f:
                self._size = os.fstat(f.fileno()).st_size
                if not final and self._idle == (batch.start, self._size):
                    return None
                if self._size < batch.start:
                    batch.problem(
                        f"shrank below the {batch.start} bytes read; the rest is ignored",
                        self._clock(),
                    )
                    batch.stopped = True
                    return None
                f.seek(batch.start)
                return f.read(READ_SIZE)
        except FileNotFoundError:
            return None  # The task wrote no results (yet).
        except OSError as e:
            batch.problem(f"{self.path} cannot be read: {e.strerror or e}", self._clock())
            batch.stopped = True
            return None

    def _take_lines(self, batch: _Batch, data: bytes, final: bool) -> None:
        pos = 0
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                batch.end += len(data)
                return
            pos, self._skipping = newline + 1, False
        while pos < len(data) and not batch.stopped:
            newline = data.find(b"\n", pos)
            if newline < 0:
                if pos == 0 and len(data) == READ_SIZE:
                    batch.line += 1
                    batch.problem(
                        f"line {batch.line} is longer than {READ_SIZE} bytes; line skipped",
                        self._clock(),
                    )
                    self._skipping = True
                    pos = len(data)
                    break
                if not final or len(data) == READ_SIZE:
                    break  # The task is still writing this line, or more follows.
                newline = len(data)
            if not batch.take(data[pos:newline], self._clock()):
                break
            pos = newline + 1
        batch.end = batch.start + min(pos, len(data))
