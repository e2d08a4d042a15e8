# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Structured results (unit, lint, work messages) in the Datastore backend.

A task's reports are numbered: the TaskReportLog entity named after the
task holds how many there are, report n is the TaskReport entity named
"<task_id>/<n>", and a keyed report also leaves a TaskReportKey marker named
"<task_id, %-quoted>/<key>". Adding one is a transaction on the log, so
reports keep the order they were added in even across replicas, and a
repeated key is seen inside the same transaction. Reading is lookups only:
no query, no index. Functions here block: DatastoreStore runs them in its
worker threads.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from server.model import TaskReport, merge_reports
from server.store import codec
from server.store.datastore_client import (
    LOOKUP_BATCH,
    TASK_REPORT,
    TASK_REPORT_KEY,
    TASK_REPORT_LOG,
    get_multi,
    key,
    load,
    make_entity,
    run_transaction,
)


def add(client: Any, task_id: str, report: TaskReport, report_key: str) -> None:
    """Appends `report` as the task's next one, unless `report_key` was seen already."""
    log_key = key(client, TASK_REPORT_LOG, task_id)
    marker_key = key(client, TASK_REPORT_KEY, _marker_name(task_id, report_key))

    def work(tx: Any) -> None:
        found = get_multi(client, [log_key, marker_key] if report_key else [log_key], tx)
        if report_key and marker_key in found:
            return
        number = (int(found[log_key]["count"]) if log_key in found else 0) + 1
        name = _report_name(task_id, number)
        tx.put(make_entity(client, TASK_REPORT, name, {}, {"data": codec.dumps(report)}))
        tx.put(make_entity(client, TASK_REPORT_LOG, task_id, {}, {"count": number}))
        if report_key:
            tx.put(make_entity(client, TASK_REPORT_KEY, _marker_name(task_id, report_key), {}, {}))

    run_transaction(client, work)


def get(client: Any, task_id: str) -> TaskReport:
    """Returns every item reported for the task, in the order reported."""
    log = client.get(key(client, TASK_REPORT_LOG, task_id))
    count = 0 if log is None else int(log["count"])
    keys = [key(client, TASK_REPORT, _report_name(task_id, n)) for n in range(1, count + 1)]
    reports: list[TaskReport] = []
    for start in range(0, len(keys), LOOKUP_BATCH):
        batch = keys[start : start + LOOKUP_BATCH]
        found = get_multi(client, batch)
        reports.extend(load(TaskReport, found[k]) for k in batch if k in found)
    return merge_reports(reports)


def _report_name(task_id: str, number: int) -> str:
    # Unambiguous even if a task ID held "/": the number is what follows the last one.
    return f"{task_id}/{number}"


def _marker_name(task_id: str, report_key: str) -> str:
    # Quoting the task ID makes the first "/" the separator whatever the strings hold.
    return f"{quote(task_id, safe='')}/{report_key}"
