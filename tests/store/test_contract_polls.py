"""The Store contract of a poll's writes, run against every backend.

dispatch_next: a claim that records the bot, its event and the poll's
answer in the claim's transaction; create_task with a dispatch does the same
for a task handed to a held poll as it is created. touch_bot: an idle poll's last-seen time
and state, which a backend may batch but must show through its own reads
at once, and which never overwrite other fields.
"""

from __future__ import annotations

import dataclasses

from server.clock import FakeClock
from server.model import Bot, BotQuery
from server.store.base import Store
from tests.store.backends import ReplicaOpener
from tests.store.records import NOW, add_task, kept_reply, make_task, recorder, take, task_id


async def test_dispatch_claims_and_records_together(store: Store) -> None:
    """The claimed task, the busy bot, its event and the answer are all stored."""
    await add_task(store, 1)
    names: list[str] = []
    dispatched = await store.dispatch_next(["q1"], NOW, take("bot1"), recorder(seen=names))
    assert dispatched is not None
    result, dispatch = dispatched
    assert result.task_id == task_id(1)
    assert names == ["task 1"], "record gets the task's request"
    stored = await store.get_result(task_id(1))
    assert stored == result
    assert stored.bot_id == "bot1"
    assert await store.get_bot("bot1") == dispatch.bot
    events = await store.list_bot_events("bot1", 10)
    assert [e.event_type for e in events.items] == ["request_task"]
    assert await kept_reply(store, "bot1", "u1") == {"cmd": "run", "task_id": result.run_id}


async def test_dispatch_with_nothing_to_claim_writes_nothing(store: Store) -> None:
    """No claimable task: None, and no bot, event or answer is stored."""
    await add_task(store, 1, queue_key="other")
    assert await store.dispatch_next(["q1"], NOW, take("bot1"), recorder()) is None
    assert await store.get_bot("bot1") is None
    assert (await store.list_bot_events("bot1", 10)).items == []
    assert await kept_reply(store, "bot1", "u1") is None


async def test_dispatch_without_request_uuid_keeps_no_answer(store: Store) -> None:
    """An answer whose request_uuid is empty is not kept for replay."""
    await add_task(store, 1)
    assert await store.dispatch_next(["q1"], NOW, take("bot1"), recorder(uuid="")) is not None
    assert await kept_reply(store, "bot1", "") is None
    assert (await store.get_bot("bot1")) is not None


async def test_dispatch_is_exclusive_across_stores(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """A task dispatched through one store cannot be dispatched through another."""
    other = await open_replica()
    await add_task(store, 1)
    assert await other.dispatch_next(["q1"], NOW, take("bot1"), recorder()) is not None
    assert await store.dispatch_next(["q1"], NOW, take("bot2"), recorder("u2")) is None


async def test_create_with_dispatch_hands_the_task_over_in_its_transaction(
    store: Store,
) -> None:
    """A task created for a held poll is stored running, with the poll's dispatch."""
    request, pending = make_task(1)
    running = take("bot1")(pending)
    assert running is not None
    dispatch = recorder()(running, request)
    stored, created = await store.create_task(request, running, dispatch)
    assert created
    assert await store.get_result(task_id(1)) == stored == running
    assert await store.get_bot("bot1") == dispatch.bot
    events = await store.list_bot_events("bot1", 10)
    assert [e.event_type for e in events.items] == ["request_task"]
    assert await kept_reply(store, "bot1", "u1") == {"cmd": "run", "task_id": running.run_id}
    assert await store.claim_next(["q1"], NOW, take("bot2")) is None, "it is in no queue"


async def test_create_with_dispatch_of_a_repeated_request_uuid_writes_no_dispatch(
    store: Store,
) -> None:
    """The task of a repeated request_uuid comes back; the dispatch is not written."""
    first = await add_task(store, 1, request_uuid="same")
    request, pending = make_task(2, request_uuid="same")
    running = take("bot1")(pending)
    assert running is not None
    stored, created = await store.create_task(request, running, recorder()(running, request))
    assert (stored, created) == (first, False)
    assert await store.get_bot("bot1") is None
    assert (await store.list_bot_events("bot1", 10)).items == []
    assert await kept_reply(store, "bot1", "u1") is None


async def test_touch_is_read_back_at_once(store: Store) -> None:
    """A touched bot reads with its new last-seen time and state; the rest stays."""
    bot = Bot(bot_id="b1", quarantined="", state={"uptime": 1}, last_seen_ts=NOW)
    await store.put_bot(bot)
    touched = dataclasses.replace(bot, last_seen_ts=NOW + 30, state={"uptime": 31})
    await store.touch_bot(touched)
    assert await store.get_bot("b1") == touched


async def test_touch_decides_liveness(store: Store) -> None:
    """list_bots judges a touched bot alive by its new last-seen time."""
    await store.put_bot(Bot(bot_id="b1", last_seen_ts=NOW - 1000))
    await store.touch_bot(Bot(bot_id="b1", last_seen_ts=NOW))
    alive = await store.list_bots(BotQuery(is_dead=False, dead_before=NOW - 600))
    assert [b.bot_id for b in alive.items] == ["b1"]


async def test_touch_keeps_other_fields_written_elsewhere(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """A touch writes only the time and state: a quarantine another store set stays."""
    other = await open_replica()
    bot = Bot(bot_id="b1", last_seen_ts=NOW)
    await store.put_bot(bot)
    await other.put_bot(dataclasses.replace(bot, admin_quarantine="broken", last_seen_ts=NOW + 1))
    await store.touch_bot(dataclasses.replace(bot, last_seen_ts=NOW + 30, state={"x": 1}))
    await store.close()
    seen = await other.get_bot("b1")
    assert seen is not None
    assert seen.admin_quarantine == "broken"
    assert seen.last_seen_ts == NOW + 30
    assert seen.state == {"x": 1}


async def test_older_touch_changes_nothing(store: Store) -> None:
    """A touch with an older last-seen time than the stored one is ignored."""
    bot = Bot(bot_id="b1", last_seen_ts=NOW, state={"a": 1})
    await store.put_bot(bot)
    await store.touch_bot(dataclasses.replace(bot, last_seen_ts=NOW - 5, state={"a": 0}))
    assert await store.get_bot("b1") == bot


async def test_put_after_touch_wins(store: Store) -> None:
    """A whole record written after a touch is what is stored."""
    bot = Bot(bot_id="b1", last_seen_ts=NOW)
    await store.put_bot(bot)
    await store.touch_bot(dataclasses.replace(bot, last_seen_ts=NOW + 1))
    replaced = dataclasses.replace(bot, quarantined="disk", last_seen_ts=NOW + 2)
    await store.put_bot(replaced)
    assert await store.get_bot("b1") == replaced


# Poll replay: the answer a dispatch kept.


async def test_poll_reply_is_keyed_by_bot_and_uuid(store: Store) -> None:
    """A kept answer comes back for its (bot, request_uuid) only."""
    await add_task(store, 1)
    await store.dispatch_next(["q1"], NOW, take("b1"), recorder("u1", bot_id="b1"))
    reply = {"cmd": "run", "task_id": f"{task_id(1)[:-1]}1"}
    assert await kept_reply(store, "b1", "u1") == reply
    assert await kept_reply(store, "b1", "u2") is None
    assert await kept_reply(store, "b2", "u1") is None
    assert await kept_reply(store, "b1", "") is None


async def test_read_poll_gives_the_bot_with_its_answer(store: Store) -> None:
    """read_poll's bot is get_bot's, with or without an answer kept for the poll."""
    assert await store.read_poll("b1", "u1") == (None, None)
    await add_task(store, 1)
    dispatched = await store.dispatch_next(["q1"], NOW, take("b1"), recorder("u1", bot_id="b1"))
    assert dispatched is not None
    bot = await store.get_bot("b1")
    assert bot == dispatched[1].bot
    assert await store.read_poll("b1", "u1") == (dispatched[1].reply.reply, bot)
    assert await store.read_poll("b1", "u2") == (None, bot)
    assert await store.read_poll("b1", "") == (None, bot)
    touched = dataclasses.replace(bot, last_seen_ts=NOW + 5, state={"up": 5})
    await store.touch_bot(touched)
    assert await store.read_poll("b1", "") == (None, touched)


async def test_poll_reply_of_the_latest_dispatch(store: Store) -> None:
    """A bot's next dispatch keeps the next answer; a write of the bot keeps it too."""
    await add_task(store, 1)
    await add_task(store, 2)
    first = await store.dispatch_next(["q1"], NOW, take("b1"), recorder("u1", bot_id="b1"))
    second = await store.dispatch_next(["q1"], NOW, take("b1"), recorder("u2", bot_id="b1"))
    assert first is not None
    assert second is not None
    reply = second[1].reply.reply
    assert await kept_reply(store, "b1", "u2") == reply
    await store.put_bot(dataclasses.replace(second[1].bot, quarantined="disk"))
    await store.touch_bot(dataclasses.replace(second[1].bot, last_seen_ts=NOW + 5))
    assert await kept_reply(store, "b1", "u2") == reply


async def test_poll_reply_expires(store: Store, store_clock: FakeClock) -> None:
    """An answer is not given once the store's clock passes its expiry; others stay."""
    await add_task(store, 1)
    await add_task(store, 2)
    await store.dispatch_next(
        ["q1"], NOW, take("b1"), recorder("old", bot_id="b1", expires_ts=NOW + 10)
    )
    await store.dispatch_next(
        ["q1"], NOW, take("b/2"), recorder("new", bot_id="b/2", expires_ts=NOW + 100)
    )
    store_clock.set(NOW + 50)
    assert await kept_reply(store, "b1", "old") is None
    assert await kept_reply(store, "b/2", "new") is not None


async def test_poll_reply_kept_by_another_store(store: Store, open_replica: ReplicaOpener) -> None:
    """A store reads the answer another store's dispatch kept, after it asked before."""
    other = await open_replica()
    await add_task(store, 1)
    assert await kept_reply(store, "b1", "u1") is None
    assert await other.dispatch_next(["q1"], NOW, take("b1"), recorder("u1", bot_id="b1"))
    assert await kept_reply(store, "b1", "u1") is not None
