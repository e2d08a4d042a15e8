"""Dimension syntax, normalization and matching (PROTOCOL.md 4.1, 4.5).

A bot matches a requested set iff for every requested (key, value) at least
one `|` alternative of the value is among the bot's values for that key.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence

from server.errors import InvalidRequest
from server.model import BotDimensions, DimensionPairs

KEY_RE = re.compile(r"[a-zA-Z\-_.][0-9a-zA-Z\-_.]{0,63}")
MAX_VALUE_LENGTH = 256
MAX_KEYS = 32
MAX_VALUES_PER_KEY = 16
# OR values multiply into flat sets; each flat set is matched separately, so
# this bounds the matching work per queue.
MAX_OR_COMBINATIONS = 8


def is_valid_key(key: str) -> bool:
    """True when `key` is a legal dimension key."""
    return bool(KEY_RE.fullmatch(key))


def value_error(value: str) -> str:
    """Returns why `value` is not a legal dimension value, or ''."""
    if not value:
        return "is empty"
    if len(value) > MAX_VALUE_LENGTH:
        return f"is longer than {MAX_VALUE_LENGTH} characters"
    if value != value.strip():
        return "has leading or trailing whitespace"
    return ""


def normalize_pairs(pairs: Iterable[tuple[str, str]]) -> DimensionPairs:
    """Validates requested dimensions and returns them sorted, OR operands sorted.

    Raises InvalidRequest naming the offending dimension.
    """
    out: set[tuple[str, str]] = set()
    for key, value in pairs:
        if not is_valid_key(key):
            raise InvalidRequest(f"dimension key {key!r} is invalid")
        alternatives = value.split("|")
        for alt in alternatives:
            problem = value_error(alt)
            if problem:
                raise InvalidRequest(f"dimension {key!r} value {value!r} {problem}")
        if len(set(alternatives)) != len(alternatives):
            raise InvalidRequest(f"dimension {key!r} value {value!r} repeats an alternative")
        out.add((key, "|".join(sorted(alternatives))))
    result = sorted(out)
    keys = {k for k, _ in result}
    if len(keys) > MAX_KEYS:
        raise InvalidRequest(f"at most {MAX_KEYS} dimension keys are allowed")
    for key in keys:
        if sum(1 for k, _ in result if k == key) > MAX_VALUES_PER_KEY:
            raise InvalidRequest(f"dimension {key!r} has more than {MAX_VALUES_PER_KEY} values")
    combinations = 1
    for _, value in result:
        combinations *= value.count("|") + 1
    if combinations > MAX_OR_COMBINATIONS:
        ors = ", ".join(f"{k!r} ({v.count('|') + 1} alternatives)" for k, v in result if "|" in v)
        raise InvalidRequest(
            f"dimensions {ors} expand to {combinations} combinations, at most "
            f"{MAX_OR_COMBINATIONS} are allowed"
        )
    return result


def matches(bot: Mapping[str, Sequence[str]], requested: DimensionPairs) -> bool:
    """True when a bot with dimensions `bot` can run a slice requesting `requested`."""
    for key, value in requested:
        have = bot.get(key)
        if not have or not any(alt in have for alt in value.split("|")):
            return False
    return True


def flat_sets(requested: DimensionPairs) -> list[DimensionPairs]:
    """Expands OR values into the flat sets they stand for."""
    options = [[(k, alt) for alt in v.split("|")] for k, v in requested]
    return [list(combo) for combo in itertools.product(*options)]


def queue_key(requested: DimensionPairs) -> str:
    """The queue of a normalized dimension set: a digest of its canonical form.

    Every task created asks, mostly for the same few sets: answers are cached.
    """
    return _queue_key(tuple((key, value) for key, value in requested))


@functools.lru_cache(maxsize=4096)
def _queue_key(pairs: tuple[tuple[str, str], ...]) -> str:
    # Tuples are written as the lists they were: stored keys stay the same.
    canonical = json.dumps(pairs, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_pairs(items: Iterable[str], what: str = "dimension") -> DimensionPairs:
    """Parses "key:value" strings (the value may contain ':')."""
    pairs = []
    for item in items:
        key, sep, value = item.partition(":")
        if not sep:
            raise InvalidRequest(f"{what} {item!r} is not of the form key:value")
        pairs.append((key, value))
    return pairs


def validate_bot_dimensions(dims: object) -> BotDimensions:
    """Checks a bot's reported dimensions: a dict of valid keys to lists of valid strings.

    Raises InvalidRequest saying what is wrong.
    """
    if not isinstance(dims, dict):
        raise InvalidRequest("dimensions must be an object of key to list of strings")
    out: BotDimensions = {}
    for key, values in dims.items():
        if not isinstance(key, str) or not is_valid_key(key):
            raise InvalidRequest(f"dimension key {key!r} is invalid")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidRequest(f"dimension {key!r} must be a list of strings")
        for v in values:
            problem = value_error(v)
            if problem:
                raise InvalidRequest(f"dimension {key!r} value {v!r} {problem}")
        out[key] = list(values)
    return out
