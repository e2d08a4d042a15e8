"""The Store contract for bots and their events (server/store/base.py), run against every backend.

Like tests/store/test_contract.py, these go only through the Store protocol.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from server.errors import InvalidRequest
from server.model import Bot, BotEvent, BotQuery
from server.store.base import Store
from tests.store.records import NOW

# Bots.


async def test_get_bot_unknown(store: Store) -> None:
    """A bot never stored reads as None."""
    assert await store.get_bot("nope") is None


async def test_put_bot_round_trip_and_replace(store: Store) -> None:
    """put_bot stores the whole record and a second put replaces it."""
    bot = Bot(
        bot_id="b1",
        dimensions={"os": ["Linux", "Ubuntu"]},
        state={"disk": {"free": 3}, "ok": True},
        last_seen_ts=NOW,
    )
    await store.put_bot(bot)
    assert await store.get_bot("b1") == bot
    newer = dataclasses.replace(bot, dimensions={"os": ["Mac"]}, version="v2")
    await store.put_bot(newer)
    assert await store.get_bot("b1") == newer


async def test_list_bots_pages_by_id(store: Store) -> None:
    """list_bots returns bots ordered by ID across pages; the last page has no cursor."""
    for name in ["c", "a", "e", "b", "d"]:
        await store.put_bot(Bot(bot_id=name))
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = await store.list_bots(BotQuery(limit=2, cursor=cursor))
        seen.extend(b.bot_id for b in page.items)
        pages += 1
        if not page.cursor:
            break
        cursor = page.cursor
    assert seen == ["a", "b", "c", "d", "e"]
    assert pages == 3


async def test_list_bots_exact_page_has_no_cursor(store: Store) -> None:
    """A listing that exactly fills its page reports no further page."""
    for name in ["a", "b"]:
        await store.put_bot(Bot(bot_id=name))
    page = await store.list_bots(BotQuery(limit=2))
    assert [b.bot_id for b in page.items] == ["a", "b"]
    assert page.cursor == ""


async def test_list_bots_dimension_filters(store: Store) -> None:
    """A bot matches when it has every requested pair; "a|b" accepts either value."""
    await store.put_bot(Bot(bot_id="lin", dimensions={"os": ["Linux"], "pool": ["p"]}))
    await store.put_bot(Bot(bot_id="mac", dimensions={"os": ["Mac"], "pool": ["p"]}))
    await store.put_bot(Bot(bot_id="win", dimensions={"os": ["Windows"], "pool": ["q"]}))

    async def ids(*pairs: tuple[str, str]) -> list[str]:
        page = await store.list_bots(BotQuery(dimensions=list(pairs)))
        return [b.bot_id for b in page.items]

    assert await ids(("os", "Linux")) == ["lin"]
    assert await ids(("pool", "p")) == ["lin", "mac"]
    assert await ids(("pool", "p"), ("os", "Mac")) == ["mac"]
    assert await ids(("os", "Linux|Windows")) == ["lin", "win"]
    assert await ids(("os", "Linux"), ("pool", "q")) == []
    assert await ids(("gpu", "none")) == []


async def test_list_bots_dimension_filter_follows_replacement(store: Store) -> None:
    """After a bot's dimensions change, filters see only the new ones."""
    await store.put_bot(Bot(bot_id="b", dimensions={"os": ["Linux"]}))
    await store.put_bot(Bot(bot_id="b", dimensions={"os": ["Mac"]}))
    old = await store.list_bots(BotQuery(dimensions=[("os", "Linux")]))
    new = await store.list_bots(BotQuery(dimensions=[("os", "Mac")]))
    assert old.items == []
    assert [b.bot_id for b in new.items] == ["b"]


async def test_list_bots_state_filters(store: Store) -> None:
    """quarantined, is_busy and is_dead select on the bot's fields, both ways."""
    await store.put_bot(Bot(bot_id="idle", last_seen_ts=NOW))
    await store.put_bot(Bot(bot_id="quar", quarantined="broken disk", last_seen_ts=NOW))
    await store.put_bot(Bot(bot_id="busy", task_id="abc1", last_seen_ts=NOW))
    await store.put_bot(Bot(bot_id="dead", last_seen_ts=NOW - 1000))

    async def ids(**kwargs: Any) -> list[str]:
        page = await store.list_bots(BotQuery(**kwargs))
        return [b.bot_id for b in page.items]

    assert await ids(quarantined=True) == ["quar"]
    assert await ids(quarantined=False) == ["busy", "dead", "idle"]
    assert await ids(is_busy=True) == ["busy"]
    assert await ids(is_busy=False) == ["dead", "idle", "quar"]
    assert await ids(is_dead=True, dead_before=NOW - 10) == ["dead"]
    assert await ids(is_dead=False, dead_before=NOW - 10) == ["busy", "idle", "quar"]


async def test_list_bots_bad_cursor(store: Store) -> None:
    """A cursor the store did not make is an InvalidRequest."""
    with pytest.raises(InvalidRequest, match="cursor"):
        await store.list_bots(BotQuery(cursor="not a cursor!"))


async def test_bot_events_newest_first_and_paged(store: Store) -> None:
    """A bot's events list newest first, paged, without other bots' events."""
    for i in range(5):
        await store.add_bot_event(BotEvent(bot_id="b1", ts=NOW + i, event_type=f"e{i}"))
    await store.add_bot_event(BotEvent(bot_id="b2", ts=NOW + 9, event_type="other"))
    first = await store.list_bot_events("b1", 3)
    second = await store.list_bot_events("b1", 3, first.cursor)
    assert [e.event_type for e in first.items] == ["e4", "e3", "e2"]
    assert [e.event_type for e in second.items] == ["e1", "e0"]
    assert second.cursor == ""


async def test_bot_events_same_time_page_without_loss(store: Store) -> None:
    """Events sharing a timestamp are neither lost nor repeated across pages."""
    for i in range(4):
        await store.add_bot_event(BotEvent(bot_id="b1", ts=NOW, event_type=f"e{i}"))
    first = await store.list_bot_events("b1", 2)
    second = await store.list_bot_events("b1", 2, first.cursor)
    types = [e.event_type for e in first.items + second.items]
    assert sorted(types) == ["e0", "e1", "e2", "e3"]


async def test_bot_event_round_trip(store: Store) -> None:
    """A listed event equals the one added."""
    event = BotEvent(
        bot_id="b1",
        ts=NOW,
        event_type="bot_connected",
        message="hi",
        dimensions={"os": ["Linux"]},
        state={"n": [1, 2]},
        quarantined="q",
    )
    await store.add_bot_event(event)
    assert (await store.list_bot_events("b1", 10)).items == [event]


async def test_bot_events_bad_cursor(store: Store) -> None:
    """A cursor from another listing is an InvalidRequest."""
    for name in "abc":
        await store.put_bot(Bot(bot_id=name))
    bots_cursor = (await store.list_bots(BotQuery(limit=1))).cursor
    with pytest.raises(InvalidRequest):
        await store.list_bot_events("a", 10, bots_cursor)
