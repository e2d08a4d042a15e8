"""Structured results of tasks: unit and lint results and work messages (Harbormaster).

A task reports them while it runs or after (our bot forwards what the task
writes to its results file; anyone allowed can report through the API), and
they are read back per task or per selector.
"""

from __future__ import annotations

from server.errors import InvalidRequest
from server.model import LintResult, TaskReport, UnitResult

UNIT_RESULTS = frozenset({"pass", "fail", "skip", "broken", "unsound"})
LINT_SEVERITIES = frozenset({"advice", "autofix", "warning", "error", "disabled"})
# Bounds what one report may hold, so a runaway task cannot flood the store.
MAX_ITEMS_PER_REPORT = 10_000
MAX_TEXT = 4096
MAX_DETAILS = 64 * 1024


def validate(report: TaskReport) -> TaskReport:
    """Checks every item of a report; raises InvalidRequest naming the bad field."""
    count = len(report.unit) + len(report.lint) + len(report.work)
    if count > MAX_ITEMS_PER_REPORT:
        raise InvalidRequest(f"a report holds at most {MAX_ITEMS_PER_REPORT} items, not {count}")
    for i, unit in enumerate(report.unit):
        _check_unit(unit, f"unit[{i}]")
    for i, lint in enumerate(report.lint):
        _check_lint(lint, f"lint[{i}]")
    for i, work in enumerate(report.work):
        _check_text(work.message, f"work[{i}].message", MAX_TEXT, required=True)
    return report


def _check_unit(unit: UnitResult, where: str) -> None:
    _check_text(unit.name, f"{where}.name", MAX_TEXT, required=True)
    if unit.result not in UNIT_RESULTS:
        raise InvalidRequest(
            f"{where}.result {unit.result!r} is not one of {', '.join(sorted(UNIT_RESULTS))}"
        )
    if unit.duration is not None and unit.duration < 0:
        raise InvalidRequest(f"{where}.duration must not be negative")
    for field in ("namespace", "engine", "path"):
        _check_text(getattr(unit, field), f"{where}.{field}", MAX_TEXT)
    _check_text(unit.details, f"{where}.details", MAX_DETAILS)


def _check_lint(lint: LintResult, where: str) -> None:
    _check_text(lint.name, f"{where}.name", MAX_TEXT, required=True)
    _check_text(lint.code, f"{where}.code", MAX_TEXT, required=True)
    if lint.severity not in LINT_SEVERITIES:
        raise InvalidRequest(
            f"{where}.severity {lint.severity!r} is not one of {', '.join(sorted(LINT_SEVERITIES))}"
        )
    for field in ("line", "char"):
        value = getattr(lint, field)
        if value is not None and value < 0:
            raise InvalidRequest(f"{where}.{field} must not be negative")
    _check_text(lint.path, f"{where}.path", MAX_TEXT)
    _check_text(lint.description, f"{where}.description", MAX_DETAILS)


def _check_text(value: str, where: str, limit: int, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidRequest(f"{where} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{where} is longer than {limit} characters")
