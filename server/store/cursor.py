"""Opaque page cursors: the sort key of a page's last item, for keyset paging.

A cursor is URL-safe base64 of JSON `[kind, key...]`. The kind names the
listing it came from, so a cursor of one listing handed to another is refused
instead of silently paging from a wrong place. Callers see only strings; a
cursor they damaged is an InvalidRequest that says so.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from server.errors import InvalidRequest


def encode(kind: str, *key: str | int | float) -> str:
    """Returns the cursor that resumes listing `kind` after `key`."""
    text = json.dumps([kind, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")


def decode(kind: str, cursor: str, *types: type[object]) -> list[Any]:
    """Returns the key inside `cursor`, checked to be a `kind` key of the given types.

    A float may come back as an int (JSON writes 2.0 as 2.0, but a caller may
    have built the key from an int): it is converted. Raises InvalidRequest.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequest(f"cursor {cursor!r} is not a cursor this server made") from e
    if not isinstance(data, list) or len(data) != len(types) + 1 or data[0] != kind:
        raise InvalidRequest(f"cursor {cursor!r} does not belong to a {kind} listing")
    key: list[Any] = []
    for value, tp in zip(data[1:], types, strict=True):
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not tp:
            raise InvalidRequest(f"cursor {cursor!r} does not belong to a {kind} listing")
        key.append(value)
    return key
