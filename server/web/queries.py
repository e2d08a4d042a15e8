"""The filters of the list pages, read from the query string.

A filter form submits with GET, so a filtered, paged view is a URL one can
share. Several pairs go in one text field separated by spaces ("os:Linux
pool:ci"), or in repeated parameters. A bad value is a 400 page naming the
parameter, like the client API's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from multidict import MultiMapping
from yarl import URL

from server import dimensions
from server.errors import InvalidRequest
from server.model import BotQuery, TaskQuery, TaskState

DEFAULT_PAGE = 50
MAX_PAGE = 500

# The bot states a list can be filtered by, as BotQuery fields.
BOT_STATES: Mapping[str, Mapping[str, bool]] = {
    "alive": {"is_dead": False},
    "dead": {"is_dead": True},
    "busy": {"is_dead": False, "is_busy": True},
    "idle": {"is_dead": False, "is_busy": False, "quarantined": False},
    "quarantined": {"quarantined": True},
}


@dataclasses.dataclass(frozen=True)
class BotFilter:
    """A bot list's filter as the form shows it, and the query it stands for."""

    dimensions: str
    state: str
    query: BotQuery


@dataclasses.dataclass(frozen=True)
class TaskFilter:
    """A task list's filter as the form shows it, and the query it stands for."""

    states: list[str]
    tags: str
    pool: str
    bot: str
    query: TaskQuery


def words(params: MultiMapping[str], name: str) -> list[str]:
    """Every space-separated word of every value of parameter `name`."""
    return [word for value in params.getall(name, []) for word in value.split()]


def one(params: MultiMapping[str], name: str) -> str:
    """The value of a parameter given at most once ("" when absent)."""
    values = params.getall(name, [])
    if len(values) > 1:
        raise InvalidRequest(f"parameter {name!r} takes one value")
    return values[0].strip() if values else ""


def limit_of(params: MultiMapping[str]) -> int:
    """The page size asked for, DEFAULT_PAGE by default."""
    text = one(params, "limit")
    if not text:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"parameter 'limit': {text!r} is not a number in 1..{MAX_PAGE}")
    return int(text)


def bot_filter(params: MultiMapping[str]) -> BotFilter:
    """The bot list filter of a query string."""
    pairs = dimensions.normalize_pairs(dimensions.parse_pairs(words(params, "dimensions")))
    state = one(params, "state")
    if state and state not in BOT_STATES:
        raise InvalidRequest(f"parameter 'state': {state!r} is not one of {', '.join(BOT_STATES)}")
    query = BotQuery(
        dimensions=pairs,
        limit=limit_of(params),
        cursor=one(params, "cursor"),
        **BOT_STATES.get(state, {}),
    )
    return BotFilter(" ".join(words(params, "dimensions")), state, query)


def task_filter(params: MultiMapping[str]) -> TaskFilter:
    """The task list filter of a query string."""
    states = [s.upper() for s in words(params, "state")]
    for name in states:
        if name not in TaskState.__members__:
            raise InvalidRequest(
                f"parameter 'state': {name!r} is not one of {', '.join(TaskState.__members__)}"
            )
    tags = words(params, "tags")
    dimensions.parse_pairs(tags, what="tag")
    pool = one(params, "pool")
    bot = one(params, "bot")
    query = TaskQuery(
        states=frozenset(TaskState[name] for name in states),
        tags=[*tags, *([f"pool:{pool}"] if pool else [])],
        bot_id=bot,
        limit=limit_of(params),
        cursor=one(params, "cursor"),
    )
    return TaskFilter(states, " ".join(tags), pool, bot, query)


def page_url(url: URL, cursor: str) -> str:
    """`url` (a path and query) with its cursor replaced ("" for the first page).

    The other parameters are kept, so the next page has the same filter.
    """
    kept = [(k, v) for k, v in url.query.items() if k != "cursor"]
    params: Sequence[tuple[str, str]] = [*kept, *([("cursor", cursor)] if cursor else [])]
    return str(url.with_query(params))


def pager(url: URL, next_cursor: str) -> dict[str, str]:
    """The pager's links of a page at `url`: the next page ("" on the last) and the
    first page ("" when this is it)."""
    return {
        "next_url": page_url(url, next_cursor) if next_cursor else "",
        "first_url": page_url(url, "") if url.query.get("cursor") else "",
    }
