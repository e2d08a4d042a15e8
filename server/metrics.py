"""Prometheus metrics at `/metrics` (DESIGN.md 10), in the Prometheus text format.

Two kinds of metric, kept apart by cost:

- Observed on the hot path, by the bot service on every poll
  (`BotCallMetrics`): the poll duration histogram, by the answer's `cmd`,
  and the dispatch latency histogram. Each observation is one
  `Histogram.observe` on a child made in advance; the only label is `cmd`,
  whose values are fixed here (anything else counts as "other"). And by
  the outermost middleware on every HTTP request (`HttpMetrics`): requests
  answered by method, route and status code, each label set's child made
  once. The route is the path template (`/api/v1/tasks/{task_id}`), or
  "unmatched" for paths no route serves, so the series stay bounded.
- Computed at scrape time (`Metrics.render`): tasks queued and running and
  bots by state, per pool, from a census of the Store
  (server/scheduler/census.py), which is taken at most once every
  CENSUS_MAX_AGE_SECS on the injected clock, however many scrapers ask;
  polls held now; the config's revision and its refused reloads, read from
  the live config.

Each app has a registry of its own (not prometheus_client's global one), so
several apps in one process (the tests, replicas) never collide. Scrapes are
reads, authorized like the client API reads whose answers they reveal
(server/auth/access.py RULES): the viewer role, which settings.cfg's
`anonymous_role` may give callers without a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from protos.api import tasks_pb2
from server.auth.access import Access
from server.clock import Clock
from server.config.live import LiveConfig
from server.middleware import Handler
from server.model import TaskResult
from server.scheduler.census import Census, CensusService
from server.scheduler.waiters import PollWaiters

PATH = "/metrics"
# The classic text format (version 0.0.4), which every Prometheus scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A census older than this is taken again at the next scrape. It reads every
# queue's count, every running task and every bot: with a million tasks
# pending that costs a noticeable share of a second, so a burst of scrapes
# (several Prometheus servers, a person reloading) costs one census.
CENSUS_MAX_AGE_SECS = 5.0
# The client API reads whose answers a scrape reveals (task counts, bots,
# the config revision): a caller needs what each of them needs.
READS = ("Tasks.CountTasks", "Bots.ListBots", "Server.GetDetails")

# The `cmd` label's values: what a poll answers (PROTOCOL.md 1.5).
POLL_COMMANDS = ("run", "sleep", "update", "bot_restart", "terminate")
OTHER_COMMAND = "other"
# A poll's own work takes about a millisecond; the top buckets catch a
# stalled store (SQLite's busy timeout is 5 s).
POLL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From a task's creation to its run being handed out: seconds on an idle
# fleet, hours behind a long queue.
DISPATCH_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

# The `method` label's values; a request with any other method counts as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The `route` of a request that no route serves (aiohttp's 404 and 405 answers).
UNMATCHED_ROUTE = "unmatched"

Timer = Callable[[], float]


class Stopwatch:
    """The real time one poll takes, less the time it is held waiting for work.

    Measured on a monotonic timer, not the injected clock: it is the
    server's own work that is timed, and a wall clock may jump.
    """

    __slots__ = ("_held", "_held_since", "_started", "_timer")

    def __init__(self, timer: Timer) -> None:
        self._timer = timer
        self._started = timer()
        self._held = 0.0
        self._held_since = 0.0

    def hold(self) -> None:
        """Stops counting: the poll waits for a task (or the end of its hold)."""
        self._held_since = self._timer()

    def resume(self) -> None:
        """Counts again: the poll was woken, or its hold ended."""
        self._held += self._timer() - self._held_since

    def elapsed(self) -> float:
        """Seconds counted so far."""
        return self._timer() - self._started - self._held


class BotCallMetrics:
    """The histograms the bot service observes on every poll."""

    def __init__(self, registry: CollectorRegistry, timer: Timer = time.perf_counter) -> None:
        self._timer = timer
        polls = Histogram(
            "drover_poll_duration_seconds",
            "Time the server took to answer a bot's poll, by the answer's cmd;"
            " the time a held poll waited for work is left out.",
            ["cmd"],
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self._polls = {cmd: polls.labels(cmd) for cmd in (*POLL_COMMANDS, OTHER_COMMAND)}
        self._dispatch = Histogram(
            "drover_dispatch_latency_seconds",
            "Time from a task's creation to its first run being handed to a bot by a poll.",
            buckets=DISPATCH_BUCKETS,
            registry=registry,
        )

    def stopwatch(self) -> Stopwatch:
        """A stopwatch started now, for one poll."""
        return Stopwatch(self._timer)

    def observe_poll(self, reply: Mapping[str, object], watch: Stopwatch) -> None:
        """Records a poll's answer and how long it took (its stopwatch's time)."""
        cmd = reply.get("cmd")
        child = self._polls.get(cmd) if isinstance(cmd, str) else None
        (child or self._polls[OTHER_COMMAND]).observe(watch.elapsed())

    def observe_dispatch(self, result: TaskResult) -> None:
        """Records the wait of a task whose run a poll just reserved (the stored result).

        Only first runs count, from `created_ts` to `started_ts`: a retry or
        a restart waited from when it was queued again, which the result
        does not record. A reservation that lapsed gives its try back, so
        the task counts again when handed out again.
        """
        if result.try_number == 1 and result.started_ts is not None:
            self._dispatch.observe(max(0.0, result.started_ts - result.created_ts))


class HttpMetrics:
    """The count of HTTP requests answered, by method, route and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "drover_http_requests",
            "HTTP requests answered, by method, route (its path template) and status code.",
            ["method", "route", "code"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}

    def count(self, method: str, route: str, code: int) -> None:
        """Counts one request; a label set's child is made the first time it is seen."""
        key = (method if method in HTTP_METHODS else "other", route, code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(key[0], route, str(code))
        child.inc()

    def _count_request(self, request: web.Request, code: int) -> None:
        resource = request.match_info.route.resource
        self.count(
            request.method, UNMATCHED_ROUTE if resource is None else resource.canonical, code
        )

    def middleware(self) -> Middleware:
        """An aiohttp middleware counting every request; put it outermost to see every answer."""

        @web.middleware
        async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            # A request cancelled (the server stopping) was not answered: not counted.
            try:
                response = await handler(request)
            except web.HTTPException as e:
                self._count_request(request, e.status)
                raise
            except Exception:
                self._count_request(request, 500)
                raise
            self._count_request(request, response.status)
            return response

        return count_requests


class Metrics:
    """An app's registry: the bot call histograms, request counts, gauges computed per scrape."""

    def __init__(
        self,
        census: CensusService,
        config: LiveConfig,
        waiters: PollWaiters,
        access: Access,
        clock: Clock,
        *,
        timer: Timer | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.bot_calls = BotCallMetrics(self.registry, timer or time.perf_counter)
        self.http = HttpMetrics(self.registry)
        self._census_service = census
        self._config = config
        self._waiters = waiters
        self._access = access
        self._clock = clock
        self._census: Census | None = None
        self._census_ts = 0.0
        self._census_lock = asyncio.Lock()
        self.registry.register(_ScrapeCollector(self))
        ProcessCollector(registry=self.registry)

    async def authorize(self, headers: Mapping[str, str]) -> None:
        """Raises Unauthenticated or PermissionDenied unless the caller may make READS."""
        await self._access.authorize_all(READS, tasks_pb2.TaskIdRequest(), headers)

    async def render(self) -> bytes:
        """The metrics in the text format, with a census at most CENSUS_MAX_AGE_SECS old."""
        async with self._census_lock:
            now = self._clock.now()
            age = now - self._census_ts
            if self._census is None or not 0 <= age < CENSUS_MAX_AGE_SECS:
                self._census = await self._census_service.take()
                self._census_ts = now
        return generate_latest(self.registry)

    def collect_scrape(self) -> Iterable[Metric]:
        """The metrics computed per scrape, from the last census and the live config."""
        census = self._census
        if census is not None:
            yield _per_pool(
                "drover_tasks_pending",
                "Tasks queued that a bot could be handed now (pending, neither paused nor"
                " expired), per pool.",
                census.queued,
            )
            yield _per_pool(
                "drover_tasks_running",
                "Tasks running (reserved ones included), per pool.",
                census.running,
            )
            bots = GaugeMetricFamily(
                "drover_bots",
                "Bots per pool and state: dead, quarantined, maintenance, busy or idle.",
                labels=["pool", "state"],
            )
            for (pool, state), count in census.bots.items():
                bots.add_metric([pool, state], count)
            yield bots
            yield GaugeMetricFamily(
                "drover_census_timestamp_seconds",
                f"When the counts of tasks and bots were taken (at most {CENSUS_MAX_AGE_SECS:g}"
                " s before the scrape).",
                value=self._census_ts,
            )
        yield GaugeMetricFamily(
            "drover_polls_held",
            "Bot polls held open now, waiting for work.",
            value=self._waiters.held,
        )
        yield InfoMetricFamily(
            "drover_config",
            "The config revision in use.",
            value={"revision": self._config.current.revision},
        )
        yield CounterMetricFamily(
            "drover_config_reload_errors",
            "Config reloads that failed since the server started (invalid edits refused, errors).",
            value=self._config.reload_errors,
        )
        yield GaugeMetricFamily(
            "drover_config_refused",
            "1 while the config files on disk are refused (the previous revision serves).",
            value=1 if self._config.error else 0,
        )


class _ScrapeCollector:
    """Hands the registry the metrics that Metrics computes per scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.collect_scrape()

    def describe(self) -> Iterable[Metric]:
        # Nothing to check against the registry's other names: collecting
        # at registration would read a census not taken yet.
        return ()


def _per_pool(name: str, documentation: str, counts: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["pool"])
    for pool, count in counts.items():
        family.add_metric([pool], count)
    return family


METRICS = web.AppKey("metrics", Metrics)


async def scrape(request: web.Request) -> web.Response:
    """GET /metrics: the app's metrics, for a caller that may read."""
    metrics = request.app[METRICS]
    await metrics.authorize(request.headers)
    return web.Response(body=await metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def routes() -> list[web.RouteDef]:
    """The metrics route."""
    return [web.get(PATH, scrape)]
