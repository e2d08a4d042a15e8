"""Task and run IDs (server/ids.py)."""

from __future__ import annotations

import pytest

from server import ids


@pytest.mark.parametrize("text", ["61c4d1e8a9f1b7c0\n", "61c4d1e8a9f1b7", "61C4D1E8A9F1B7C0", ""])
def test_only_an_exact_id_is_a_task_id(text: str) -> None:
    """An ID is 15-17 lowercase hex digits, all of the text: no final newline either."""
    assert not ids.is_task_id(text)


def test_a_new_id_is_a_summary_id_whose_run_ids_split_back() -> None:
    """A fresh ID ends in 0 (the summary); its run IDs name it and their try number."""
    summary = ids.new_task_id(1_700_000_000.0)
    assert ids.is_task_id(summary)
    assert summary.endswith("0")
    assert ids.split_run_id(summary[:-1] + "2") == (summary, 2)
