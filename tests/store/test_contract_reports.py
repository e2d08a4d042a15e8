"""Store contract: structured results (add_report, get_report), for every backend."""

from __future__ import annotations

from server.model import LintResult, TaskReport, UnitResult, WorkMessage
from server.store.base import Store


async def test_reports_append_in_order_per_task(store: Store) -> None:
    """Items of successive reports come back in the order reported, per task."""
    first = TaskReport(unit=[UnitResult(name="a", result="pass", duration=1.5)])
    second = TaskReport(
        unit=[UnitResult(name="b", result="fail", details="boom")],
        lint=[LintResult(name="n", code="E1", severity="error", line=4, char=None)],
        work=[WorkMessage(ts=10.0, message="half way")],
    )
    await store.add_report("aaa0", first)
    await store.add_report("bbb0", TaskReport(unit=[UnitResult(name="other", result="skip")]))
    await store.add_report("aaa0", second)
    got = await store.get_report("aaa0")
    assert [u.name for u in got.unit] == ["a", "b"]
    assert got.unit[0].duration == 1.5
    assert got.lint == second.lint
    assert got.work == second.work
    assert [u.name for u in (await store.get_report("bbb0")).unit] == ["other"]


async def test_a_task_without_reports_has_an_empty_one(store: Store) -> None:
    """Reading the results of a task nobody reported on gives an empty report."""
    assert await store.get_report("ccc0") == TaskReport()


async def test_a_keyed_report_counts_once(store: Store) -> None:
    """Adding a report again with the same key changes nothing; another key appends."""
    report = TaskReport(unit=[UnitResult(name="a", result="pass")])
    await store.add_report("ddd0", report, key="run1:0")
    await store.add_report("ddd0", report, key="run1:0")
    await store.add_report("ddd0", report, key="run1:40")
    await store.add_report("eee0", report, key="run1:0")
    assert len((await store.get_report("ddd0")).unit) == 2
    assert len((await store.get_report("eee0")).unit) == 1
