"""Human output of the CLI: tables, ages, key-value blocks; and `--json` output.

Everything goes to stdout; messages about the command itself go to stderr.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def print_json(document: Any) -> None:
    """Prints a JSON document on stdout, indented for people and parseable by scripts."""
    print(json.dumps(document, indent=2, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Prints rows as left-aligned columns under upper-case headers."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [[h.upper() for h in headers], *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        print(line.rstrip())


def listing(
    page: dict[str, Any],
    as_json: bool,
    headers: Sequence[str],
    row: Callable[[dict[str, Any]], list[str]],
) -> int:
    """Prints a page of a listing: its JSON, or a table of its items and how to get
    the next page. Returns the exit status, 0."""
    if as_json:
        print_json(page)
        return 0
    table(headers, [row(item) for item in page.get("items", [])])
    if page.get("cursor"):
        warn(f"more: --cursor {page['cursor']}")
    return 0


def fields(pairs: Sequence[tuple[str, str]]) -> None:
    """Prints `label: value` lines, aligned, skipping empty values."""
    shown = [(k, v) for k, v in pairs if v]
    width = max((len(k) for k, _ in shown), default=0)
    for key, value in shown:
        print(f"{key + ':':<{width + 1}} {value}")


def parse_ts(value: str) -> datetime.datetime | None:
    """An RFC 3339 timestamp from the API; None when absent or malformed."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def now() -> datetime.datetime:
    """The current time, timezone-aware, for ages."""
    return datetime.datetime.now(datetime.UTC)


def duration(seconds: float) -> str:
    """A short duration: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age(value: str) -> str:
    """How long ago an API timestamp was, or '' if unset."""
    ts = parse_ts(value)
    return duration((now() - ts).total_seconds()) if ts else ""


def when(value: str) -> str:
    """An API timestamp, relative too: `2026-05-01 10:00:00 UTC (3m ago)` or `(in 1h)`."""
    ts = parse_ts(value)
    if ts is None:
        return ""
    shown = ts.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = (now() - ts).total_seconds()
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return f"{shown} ({relative})"


def size(n: int) -> str:
    """A byte count: 512 B, 3.4 KiB, 1.2 MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def pairs(items: Sequence[dict[str, Any]], sep: str = ":") -> str:
    """`[{key, value}]` (value a string or a list) as `k:v k:v1|v2`."""
    out = []
    for item in items:
        value = item.get("value", "")
        shown = "|".join(value) if isinstance(value, list) else str(value)
        out.append(f"{item.get('key', '')}{sep}{shown}")
    return " ".join(out)


def warn(message: str) -> None:
    """A message about the command on stderr."""
    print(f"drover: {message}", file=sys.stderr)
