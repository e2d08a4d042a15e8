"""Small SQL-building helpers shared by the SQLite store's modules."""

from __future__ import annotations

from collections.abc import Sequence


def marks(values: Sequence[object] | frozenset[object]) -> str:
    """One `?` placeholder per value."""
    return ", ".join("?" * len(values))


def where(conditions: list[str]) -> str:
    """A WHERE clause joining `conditions` with AND, or nothing."""
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""
