"""Structured results of tasks: unit and lint results and work messages (Harbormaster).

A task reports them while it runs or after (our bot forwards what the task
writes to its results file; anyone allowed can report through the API), and
they are read back per task or per selector. The rules an item must follow
are bot/results.py's `check_report`, one definition for the server and the
bot: the bot checks a results file's lines with it before sending them,
because a task_update the server refused would end the run.
"""

from __future__ import annotations

from bot import results as rules
from server.errors import InvalidRequest
from server.model import TaskReport
from server.store import codec

UNIT_RESULTS = rules.UNIT_RESULTS
LINT_SEVERITIES = rules.LINT_SEVERITIES
MAX_ITEMS_PER_REPORT = rules.MAX_ITEMS_PER_REPORT


def validate(report: TaskReport) -> TaskReport:
    """Checks every item of a report; raises InvalidRequest naming the bad field."""
    try:
        rules.check_report(codec.to_dict(report))
    except ValueError as e:
        raise InvalidRequest(str(e)) from e
    return report


def from_json(raw: object) -> TaskReport:
    """A report sent as JSON ({unit, lint, work: [{ts, message}]}), checked before it is
    decoded, so a wrong type is a 400 naming the field too."""
    try:
        rules.check_report(raw)
        assert isinstance(raw, dict), "check_report refuses anything but an object"
        return codec.from_dict(TaskReport, raw)
    except ValueError as e:
        raise InvalidRequest(str(e)) from e
