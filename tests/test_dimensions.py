"""Dimension syntax, normalization and matching (server/dimensions.py)."""

from __future__ import annotations

import hashlib

import pytest

from server.dimensions import (
    MAX_OR_COMBINATIONS,
    flat_sets,
    is_valid_key,
    matches,
    normalize_pairs,
    queue_key,
)
from server.errors import InvalidRequest


def test_or_values_are_normalized_so_equal_sets_share_a_queue() -> None:
    """OR operands and pairs are sorted and repeats dropped: the same set in any order
    is one queue."""
    one = normalize_pairs([("pool", "p"), ("os", "Mac|Linux"), ("os", "Mac|Linux")])
    other = normalize_pairs([("os", "Linux|Mac"), ("pool", "p")])
    assert one == other == [("os", "Linux|Mac"), ("pool", "p")]
    assert queue_key(one) == queue_key(other)


def test_queue_key_is_the_digest_of_the_canonical_json() -> None:
    """Queue keys are stored: a set's key is the digest of its compact, ASCII-escaped
    JSON, the first time and when it comes from the cache."""
    pairs = [("os", "Linux"), ("pool", "caf\u00e9")]
    canonical = '[["os","Linux"],["pool","caf\\u00e9"]]'
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert queue_key(pairs) == expected
    assert queue_key(list(pairs)) == expected


def test_or_combinations_are_bounded() -> None:
    """Up to MAX_OR_COMBINATIONS flat sets are accepted; one more is refused, naming the
    dimensions with alternatives."""
    eight = normalize_pairs([("a", "1|2"), ("b", "1|2"), ("c", "1|2"), ("pool", "p")])
    assert len(flat_sets(eight)) == MAX_OR_COMBINATIONS
    with pytest.raises(InvalidRequest, match=r"'a' \(3 alternatives\), 'b' \(3 alternatives\)"):
        normalize_pairs([("a", "1|2|3"), ("b", "1|2|3"), ("pool", "p")])


@pytest.mark.parametrize(
    ("pairs", "named"),
    [
        ([("bad key", "x")], "'bad key'"),
        ([("os", "")], "'os'"),
        ([("os", " Linux")], "'os'"),
        ([("os", "Linux|")], "'os'"),
        ([("os", "Linux|Linux")], "'os'"),
        ([("os", "x" * 257)], "'os'"),
        ([("os", str(i)) for i in range(17)], "'os'"),
    ],
)
def test_invalid_dimension_is_refused_by_name(pairs: list[tuple[str, str]], named: str) -> None:
    """Every malformed dimension is refused with a message naming its key."""
    with pytest.raises(InvalidRequest, match=named):
        normalize_pairs(pairs)


def test_a_bot_matches_when_it_has_one_alternative_of_every_pair() -> None:
    """Each requested pair needs one of its `|` alternatives among the bot's values;
    extra bot dimensions do not matter."""
    requested = normalize_pairs([("os", "Linux|Mac"), ("pool", "p")])
    assert matches({"os": ["Mac"], "pool": ["p"], "gpu": ["x"]}, requested)
    assert not matches({"os": ["Windows"], "pool": ["p"]}, requested)
    assert not matches({"os": ["Linux"]}, requested)


@pytest.mark.parametrize("text", ["os\n", "pool\n"])
def test_a_key_with_a_trailing_newline_is_not_valid(text: str) -> None:
    """A key must match the syntax whole ("$" alone would let a final newline in)."""
    assert is_valid_key(text.strip())
    assert not is_valid_key(text)
