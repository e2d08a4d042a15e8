"""/metrics (server/metrics.py): what a scrape reports after tasks, polls and config edits."""

from __future__ import annotations

import asyncio
import pathlib

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.appkeys import CONFIG, STORE
from server.auth.tokens import ApiTokenService
from server.clock import FakeClock
from server.metrics import CENSUS_MAX_AGE_SECS
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of, until_held

POOLS = """
pool {
  name: "default"
}
pool {
  name: "gpu"
}
"""
ANONYMOUS_ADMIN = 'long_poll_secs: 0\nanonymous_role: "admin"\n'
# The labels of an answered scrape in drover_http_requests_total.
METRICS_200 = {"method": "GET", "route": "/metrics", "code": "200"}
# Each read of the fake timer is this much later than the one before.
TICK = 0.25

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Ticks:
    """A fake monotonic timer that moves TICK seconds at every read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += TICK
        return self.now


async def scrape(client: TestClient, status: int = 200, **headers: str) -> Samples:  # type: ignore[type-arg]
    """Scrapes /metrics and returns every sample by (name, labels)."""
    resp = await client.get("/metrics", headers=headers)
    text = await resp.text()
    assert resp.status == status, text
    if status != 200:
        return {}
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; a KeyError names a missing series."""
    return samples[name, frozenset(labels.items())]


async def new_task(client: TestClient, pool: str = "default") -> str:  # type: ignore[type-arg]
    """Creates a task in `pool` that waits for capacity; returns its ID."""
    body = task_body(wait=True)
    body["task_slices"][0]["properties"]["dimensions"] = [{"key": "pool", "value": pool}]
    resp = await client.post("/api/v1/tasks", json=body)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["task_id"])


async def started_bot(client: TestClient) -> ScriptedBot:  # type: ignore[type-arg]
    """A bot of the default group, past its handshake."""
    bot = ScriptedBot(client)
    await bot.handshake()
    return bot


async def test_tasks_are_counted_per_pool(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """Queued and running tasks are counted in their own pool; an empty pool reports zeros."""
    (config_dir / "pools.cfg").write_text(POOLS)
    client = await make_server()
    for pool in ("default", "default", "default", "gpu"):
        await new_task(client, pool)
    bot = await started_bot(client)
    assert (await bot.poll())["cmd"] == "run"
    samples = await scrape(client)
    assert value(samples, "drover_tasks_pending", pool="default") == 2
    assert value(samples, "drover_tasks_pending", pool="gpu") == 1
    assert value(samples, "drover_tasks_running", pool="default") == 1
    assert value(samples, "drover_tasks_running", pool="gpu") == 0
    assert value(samples, "drover_bots", pool="default", state="busy") == 1
    assert value(samples, "drover_bots", pool="default", state="idle") == 0
    assert value(samples, "drover_bots", pool="gpu", state="busy") == 0


async def test_counts_are_cached_for_a_few_seconds(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """Scrapes within CENSUS_MAX_AGE_SECS of a census reuse it; a later scrape counts again."""
    client = await make_server()
    await new_task(client)
    first = await scrape(client)
    assert value(first, "drover_tasks_pending", pool="default") == 1
    assert value(first, "drover_census_timestamp_seconds") == clock.now()
    await new_task(client)
    clock.advance(CENSUS_MAX_AGE_SECS - 0.5)
    assert value(await scrape(client), "drover_tasks_pending", pool="default") == 1
    clock.advance(0.5)
    fresh = await scrape(client)
    assert value(fresh, "drover_tasks_pending", pool="default") == 2
    assert value(fresh, "drover_census_timestamp_seconds") == clock.now()


async def test_poll_durations_are_observed_by_answer(make_server: ServerFactory) -> None:
    """Each poll adds one observation under its answer's cmd, timed by the injected timer."""
    client = await make_server(timer=Ticks())
    bot = await started_bot(client)
    assert (await bot.poll())["cmd"] == "sleep"
    samples = await scrape(client)
    assert value(samples, "drover_poll_duration_seconds_count", cmd="sleep") == 1
    # Two reads of the timer: the poll took one tick.
    assert value(samples, "drover_poll_duration_seconds_sum", cmd="sleep") == TICK
    assert value(samples, "drover_poll_duration_seconds_bucket", cmd="sleep", le="0.1") == 0
    assert value(samples, "drover_poll_duration_seconds_bucket", cmd="sleep", le="0.25") == 1
    assert value(samples, "drover_poll_duration_seconds_count", cmd="run") == 0
    await new_task(client)
    assert (await bot.poll())["cmd"] == "run"
    samples = await scrape(client)
    assert value(samples, "drover_poll_duration_seconds_count", cmd="run") == 1
    assert value(samples, "drover_poll_duration_seconds_count", cmd="sleep") == 1


async def test_held_poll_duration_leaves_out_the_hold(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A held poll's hold does not count: four timer reads (start, hold, wake, end) time two
    ticks, not three."""
    (config_dir / "settings.cfg").write_text('long_poll_secs: 30\nanonymous_role: "admin"\n')
    client = await make_server(timer=Ticks())
    bot = await started_bot(client)
    held = asyncio.create_task(bot.poll())
    await until_held(client)
    samples = await scrape(client)
    assert value(samples, "drover_polls_held") == 1
    await new_task(client)
    assert (await asyncio.wait_for(held, 10))["cmd"] == "run"
    samples = await scrape(client)
    assert value(samples, "drover_poll_duration_seconds_sum", cmd="run") == 2 * TICK
    assert value(samples, "drover_polls_held") == 0


async def test_dispatch_latency_runs_from_creation_to_the_poll(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """A task handed out 7 s after its creation adds one 7 s dispatch; idle polls add none."""
    client = await make_server()
    bot = await started_bot(client)
    await new_task(client)
    clock.advance(7)
    assert (await bot.poll())["cmd"] == "run"
    other = ScriptedBot(client, "bot2")
    await other.handshake()
    assert (await other.poll())["cmd"] == "sleep"
    samples = await scrape(client)
    assert value(samples, "drover_dispatch_latency_seconds_count") == 1
    assert value(samples, "drover_dispatch_latency_seconds_sum") == 7
    assert value(samples, "drover_dispatch_latency_seconds_bucket", le="5.0") == 0
    assert value(samples, "drover_dispatch_latency_seconds_bucket", le="10.0") == 1


async def test_refused_config_edits_are_counted(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """An invalid edit adds a reload error and flags the refusal, the revision stays; a valid
    edit clears the flag and shows the new revision, the count stays."""
    client = await make_server()
    config = app_of(client)[CONFIG]
    before = config.current.revision
    samples = await scrape(client)
    assert value(samples, "drover_config_reload_errors_total") == 0
    assert value(samples, "drover_config_info", revision=before) == 1
    # Past long_poll_secs's range (0..45).
    (config_dir / "settings.cfg").write_text('long_poll_secs: 99\nanonymous_role: "admin"\n')
    assert not config.reload()
    samples = await scrape(client)
    assert value(samples, "drover_config_reload_errors_total") == 1
    assert value(samples, "drover_config_refused") == 1
    assert value(samples, "drover_config_info", revision=before) == 1
    (config_dir / "settings.cfg").write_text(f"{ANONYMOUS_ADMIN}max_bot_sleep_time: 30\n")
    assert config.reload()
    samples = await scrape(client)
    assert value(samples, "drover_config_reload_errors_total") == 1
    assert value(samples, "drover_config_refused") == 0
    assert value(samples, "drover_config_info", revision=config.current.revision) == 1
    assert ("drover_config_info", frozenset({("revision", before)})) not in samples


async def test_scrapes_need_the_viewer_role(
    make_server: ServerFactory, config_dir: pathlib.Path, clock: FakeClock
) -> None:
    """Without anonymous reads a scrape needs a token of a viewer; anonymous viewers may scrape."""
    (config_dir / "settings.cfg").write_text("long_poll_secs: 0\n")
    client = await make_server()
    await scrape(client, 401)
    tokens = ApiTokenService(app_of(client)[STORE], clock)
    token, _ = await tokens.create("prometheus", "viewer", created_by="local")
    samples = await scrape(client, Authorization=f"Bearer {token}")
    assert value(samples, "drover_config_reload_errors_total") == 0
    await scrape(client, 401, Authorization="Bearer drv_not_a_token")
    (config_dir / "settings.cfg").write_text('long_poll_secs: 0\nanonymous_role: "viewer"\n')
    assert app_of(client)[CONFIG].reload()
    await scrape(client)


async def test_each_app_has_its_own_registry(make_server: ServerFactory) -> None:
    """Two apps in one process count their own polls only."""
    first, second = await make_server(), await make_server()
    for client in (first, second, second):
        assert (await (await started_bot(client)).poll())["cmd"] == "sleep"
    counts = [
        value(await scrape(client), "drover_poll_duration_seconds_count", cmd="sleep")
        for client in (first, second)
    ]
    assert counts == [1, 2]


async def test_http_requests_are_counted_by_method_route_and_code(
    make_server: ServerFactory,
) -> None:
    """Each answered request counts once under its route's template and its status; a path no
    route serves counts as "unmatched", whatever the path."""
    client = await make_server()
    task_id = await new_task(client)
    assert (await client.get(f"/api/v1/tasks/{task_id}")).status == 200
    assert (await client.get("/api/v1/tasks/0123456789abcdef0")).status == 404
    assert (await client.post("/api/v1/tasks", data=b"[1]")).status == 400
    for path in ("/api/v1/nothing", "/api/v2/more/nothing", "/no/such/page"):
        assert (await client.get(path)).status == 404
    assert (await client.request("TRACE", "/api/v1/server")).status == 405
    bot = await started_bot(client)
    assert (await bot.poll())["cmd"] == "run"
    samples = await scrape(client)

    def requests(method: str, route: str, code: str) -> float:
        return value(samples, "drover_http_requests_total", method=method, route=route, code=code)

    assert requests("POST", "/api/v1/tasks", "200") == 1
    assert requests("POST", "/api/v1/tasks", "400") == 1
    assert requests("GET", "/api/v1/tasks/{task_id}", "200") == 1
    assert requests("GET", "/api/v1/tasks/{task_id}", "404") == 1
    assert requests("GET", "unmatched", "404") == 3
    assert requests("other", "unmatched", "405") == 1
    assert requests("POST", "/swarming/api/v1/bot/handshake", "200") == 1
    assert requests("POST", "/swarming/api/v1/bot/poll", "200") == 1
    # A scrape is counted once answered: in the next one.
    scrapes = ("drover_http_requests_total", frozenset(METRICS_200.items()))
    assert scrapes not in samples
    assert (await scrape(client))[scrapes] == 1
