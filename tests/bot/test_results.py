"""Reading a task's results file (bot/results.py): complete lines, resends, bad lines."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import pytest

from bot import results
from bot.results import ResultsFile
from tests.bot.conftest import StartBot
from tests.bot.fakeserver import FakeServer, manifest

T1 = "1a2b3c4d5e6f7001"

UNIT = {"name": "test_a", "result": "pass", "duration": 0.5}
LINT = {"name": "unused", "code": "F401", "severity": "warning", "path": "a.py", "line": 3}


def _line(**report: Any) -> str:
    return json.dumps(report) + "\n"


def _messages(report: dict[str, Any]) -> list[str]:
    return [w["message"] for w in report["work"]]


def test_complete_lines_are_read_as_they_are_written(tmp_path: pathlib.Path) -> None:
    """Only whole lines count until the task has exited; then the last one counts too."""
    path = tmp_path / "r.jsonl"
    results_file = ResultsFile(str(path), clock=lambda: 7.0)
    assert results_file.peek() is None  # No file yet: the task wrote nothing.
    path.write_text(_line(unit=[UNIT]) + '{"lint": [')
    assert results_file.peek() == (0, {"unit": [UNIT], "lint": [], "work": []})
    results_file.ack()
    assert results_file.peek() is None
    with path.open("a") as f:
        f.write(json.dumps([LINT])[1:-1] + '], "work": "linted"}')
    assert results_file.peek() is None
    offset = len(_line(unit=[UNIT]))
    assert results_file.peek(final=True) == (
        offset,
        {"unit": [], "lint": [LINT], "work": [{"ts": 7.0, "message": "linted"}]},
    )


def test_a_batch_is_the_same_until_acknowledged(tmp_path: pathlib.Path) -> None:
    """A failed send gets the very same batch at the same offset, even if the file grew."""
    path = tmp_path / "r.jsonl"
    path.write_text(_line(unit=[UNIT]))
    results_file = ResultsFile(str(path))
    first = results_file.peek()
    with path.open("a") as f:
        f.write(_line(lint=[LINT]))
    assert results_file.peek() == first
    results_file.ack()
    assert results_file.peek() == (
        len(_line(unit=[UNIT])),
        {"unit": [], "lint": [LINT], "work": []},
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{nope\n", "line 2: not JSON"),
        ("[1, 2]\n", "line 2: a line is a JSON object, not list"),
        ('{"units": []}\n', "line 2: unknown key 'units'"),
        ('{"unit": [{"name": "t", "result": "ok"}]}\n', "line 2: unit[0].result 'ok' is not"),
        ('{"unit": [{"name": 3, "result": "pass"}]}\n', "line 2: unit[0].name must be a string"),
        ('{"lint": [{"name": "n", "code": "c", "severity": "error", "line": 1.5}]}\n',
         "line 2: lint[0].line must be a whole number"),
        ('{"work": 5}\n', "line 2: work must be a string"),
        (b"\xff\xfe\n".decode("latin-1"), "line 2: is not UTF-8"),
    ],
)  # fmt: skip
def test_a_bad_line_is_skipped_and_said_so(tmp_path: pathlib.Path, line: str, problem: str) -> None:
    """A line breaking the rules becomes a work message naming it; the others still count."""
    path = tmp_path / "r.jsonl"
    path.write_bytes((_line(unit=[UNIT]) + line + _line(lint=[LINT])).encode("latin-1"))
    batch = ResultsFile(str(path)).peek()
    assert batch is not None
    report = batch[1]
    assert report["unit"] == [UNIT]
    assert report["lint"] == [LINT]
    (message,) = _messages(report)
    assert message.startswith(f"drover_bot: results file {problem}")
    assert message.endswith("; line skipped")
    results.check_report(report)  # What is sent is what the server accepts.


def test_an_unreadable_file_is_reported_once(tmp_path: pathlib.Path) -> None:
    """A path that cannot be read gives one work message, then nothing more."""
    path = tmp_path / "r.jsonl"
    path.mkdir()
    results_file = ResultsFile(str(path))
    batch = results_file.peek()
    assert batch is not None
    (message,) = _messages(batch[1])
    assert "cannot be read" in message
    results_file.ack()
    assert results_file.peek(final=True) is None


def test_batches_stay_within_what_one_update_may_carry(tmp_path: pathlib.Path) -> None:
    """Many lines are sent in batches of at most MAX_BATCH_ITEMS items, at increasing offsets."""
    path = tmp_path / "r.jsonl"
    count = results.MAX_BATCH_ITEMS + 10
    path.write_text("".join(_line(unit=[{**UNIT, "name": f"t{i}"}]) for i in range(count)))
    results_file = ResultsFile(str(path))
    names: list[str] = []
    offsets = []
    while (batch := results_file.peek(final=True)) is not None:
        offsets.append(batch[0])
        assert len(batch[1]["unit"]) <= results.MAX_BATCH_ITEMS
        names.extend(u["name"] for u in batch[1]["unit"])
        results_file.ack()
    assert names == [f"t{i}" for i in range(count)]
    assert offsets == sorted(offsets)
    assert len(offsets) == 2
    assert results_file.offset == os.path.getsize(path)


def test_a_line_too_large_for_one_update_is_refused(tmp_path: pathlib.Path) -> None:
    """A line with more items than one update carries is skipped and reported."""
    path = tmp_path / "r.jsonl"
    path.write_text(_line(unit=[UNIT] * (results.MAX_BATCH_ITEMS + 1)) + _line(lint=[LINT]))
    batch = ResultsFile(str(path)).peek()
    assert batch is not None
    assert batch[1]["lint"] == [LINT]
    assert "line 1: holds more than" in _messages(batch[1])[0]


def test_too_many_bad_lines_stop_the_reading(tmp_path: pathlib.Path) -> None:
    """Past MAX_BAD_LINES bad lines the rest of the file is ignored, and said so."""
    path = tmp_path / "r.jsonl"
    path.write_text("junk\n" * (results.MAX_BAD_LINES + 50) + _line(unit=[UNIT]))
    results_file = ResultsFile(str(path))
    messages: list[str] = []
    units = []
    while (batch := results_file.peek(final=True)) is not None:
        messages.extend(_messages(batch[1]))
        units.extend(batch[1]["unit"])
        results_file.ack()
    assert len(messages) == results.MAX_BAD_LINES + 1
    assert messages[-1].endswith(f"has {results.MAX_BAD_LINES} bad lines; the rest is ignored")
    assert units == []


def _task_writing(lines: str, code: int = 0) -> list[str]:
    """A command that appends `lines` to its results file, one write per line, then exits."""
    script = (
        "import os, sys, time\n"
        f"lines = {lines!r}.splitlines(True)\n"
        "with open(os.environ['DROVER_RESULTS_FILE'], 'a') as f:\n"
        "    for line in lines:\n"
        "        f.write(line); f.flush(); time.sleep(0.05)\n"
        "print('done')\n"
        f"sys.exit({code})\n"
    )
    return [sys.executable, "-c", script]


def _sent(server: FakeServer, task_id: str) -> tuple[dict[str, list[Any]], list[int]]:
    """Every result item the bot sent for the task, and the offsets it sent them at."""
    merged: dict[str, list[Any]] = {"unit": [], "lint": [], "work": []}
    offsets = []
    for rec in server.updates(task_id):
        if "results" in rec.body:
            offsets.append(rec.body["results_offset"])
            for kind, items in rec.body["results"].items():
                merged[kind].extend(items)
    return merged, offsets


def test_the_runner_sends_the_results_before_the_completion(
    server: FakeServer, start_bot: StartBot
) -> None:
    """A task's results go with its updates, every one of them before the final one."""
    lines = _line(unit=[UNIT]) + _line(lint=[LINT]) + '{"work": "no newline at the end"}'
    server.run(manifest(T1, _task_writing(lines, code=4)))
    start_bot()
    final = server.wait_final(T1)
    assert final.body["exit_code"] == 4
    assert "results" not in final.body
    sent, offsets = _sent(server, T1)
    assert sent["unit"] == [UNIT]
    assert sent["lint"] == [LINT]
    assert [w["message"] for w in sent["work"]] == ["no newline at the end"]
    assert offsets == sorted(set(offsets))
    assert server.output(T1) == b"done\n"


def test_a_broken_results_file_does_not_touch_the_task(
    server: FakeServer, start_bot: StartBot
) -> None:
    """Bad lines are reported as work messages; the task's exit code and output stay its own."""
    lines = "garbage\n" + _line(unit=[{"name": "t", "result": "great"}]) + _line(unit=[UNIT])
    server.run(manifest(T1, _task_writing(lines)))
    start_bot()
    assert server.wait_final(T1).body["exit_code"] == 0
    sent, _ = _sent(server, T1)
    assert sent["unit"] == [UNIT]
    messages = [w["message"] for w in sent["work"]]
    assert [m.split(":")[1].strip() for m in messages] == [
        "results file line 1",
        "results file line 2",
    ]
    assert server.output(T1) == b"done\n"
