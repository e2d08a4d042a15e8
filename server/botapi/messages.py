"""Bot API requests, parsed from JSON into typed records.

Each `parse_*` raises InvalidRequest naming the field that is wrong; nothing
is stored for a request that does not parse. Fields a stock bot sends that we
do not use are ignored (PROTOCOL.md 0.2.7 U4 lists the shapes seen).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from server.dimensions import validate_bot_dimensions
from server.errors import InvalidRequest
from server.model import BotDimensions, TaskReport
from server.scheduler import reports
from server.scheduler.transitions import RunUpdate

SESSION_ID_RE = re.compile(r"[a-z0-9\-_/]{1,50}")
BOT_ID_RE = re.compile(r"[0-9a-zA-Z\-_.]{1,200}")
# A run ID: a task ID whose last digit (the try number) is not 0.
RUN_ID_RE = re.compile(r"[0-9a-f]{15,17}")
EVENT_TYPES = frozenset({"bot_error", "bot_log", "bot_rebooting", "bot_shutdown"})


@dataclasses.dataclass(frozen=True)
class BotCredentials:
    """What a request proves about its sender: its address and its headers."""

    remote_ip: str
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class BotReport:
    """The part every bot call may carry: who it is and what it looks like.

    `dimensions_error` is set when the reported dimensions were malformed:
    that quarantines the bot rather than failing the call (PROTOCOL.md 1.4).
    """

    dimensions: BotDimensions
    state: dict[str, Any]
    version: str
    dimensions_error: str = ""


@dataclasses.dataclass(frozen=True)
class HandshakeRequest:
    bot_id: str
    report: BotReport
    session_id: str


@dataclasses.dataclass(frozen=True)
class PollRequest:
    bot_id: str
    report: BotReport
    session: str | None
    request_uuid: str


@dataclasses.dataclass(frozen=True)
class EventRequest:
    event: str
    message: str
    report: BotReport
    session: str | None
    task_id: str


@dataclasses.dataclass(frozen=True)
class ClaimRequest:
    session: str | None
    claim_id: str
    run_id: str


@dataclasses.dataclass(frozen=True)
class TaskUpdateRequest:
    session: str | None
    bot_id: str
    run_id: str
    output: bytes | None
    output_chunk_start: int
    update: RunUpdate
    # Structured results the task wrote (our bot's addition; stock bots send
    # none), and their position in the task's results file, which makes a
    # resent update's results count once.
    report: TaskReport | None = None
    results_offset: int = 0


@dataclasses.dataclass(frozen=True)
class TaskErrorRequest:
    session: str | None
    bot_id: str
    run_id: str
    message: str
    client_error: bool


def parse_handshake(body: Mapping[str, Any]) -> HandshakeRequest:
    """Parses a handshake: the bot ID is `dimensions.id[0]`."""
    report = _report(body)
    session_id = _str(body, "session_id")
    if session_id and not SESSION_ID_RE.fullmatch(session_id):
        raise InvalidRequest(f"session_id {session_id!r} must match {SESSION_ID_RE.pattern}")
    return HandshakeRequest(bot_id=_bot_id(body), report=report, session_id=session_id)


def parse_poll(body: Mapping[str, Any]) -> PollRequest:
    """Parses a poll."""
    return PollRequest(
        bot_id=_bot_id(body),
        report=_report(body),
        session=_session(body),
        request_uuid=_str(body, "request_uuid"),
    )


def parse_event(body: Mapping[str, Any]) -> EventRequest:
    """Parses an event; only the bot's event types are accepted."""
    event = _str(body, "event")
    if event not in EVENT_TYPES:
        raise InvalidRequest(f"event {event!r} is not one of {', '.join(sorted(EVENT_TYPES))}")
    return EventRequest(
        event=event,
        message=_str(body, "message"),
        report=_report(body),
        session=_session(body),
        task_id=_str(body, "task_id"),
    )


def parse_claim(body: Mapping[str, Any]) -> ClaimRequest:
    """Parses a claim of a reserved run."""
    claim_id = _str(body, "claim_id")
    if not claim_id or len(claim_id) > 128:
        raise InvalidRequest("claim_id is required (at most 128 characters)")
    return ClaimRequest(session=_session(body), claim_id=claim_id, run_id=_run_id(body))


def parse_task_update(body: Mapping[str, Any]) -> TaskUpdateRequest:
    """Parses a task_update; checks the value rules of PROTOCOL.md 1.8."""
    output: bytes | None = None
    raw = body.get("output")
    if raw is not None:
        if not isinstance(raw, str):
            raise InvalidRequest("output must be a base64 string")
        try:
            output = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidRequest("output is not valid base64") from e
    start = _number(body, "output_chunk_start", int) or 0
    if start < 0:
        raise InvalidRequest("output_chunk_start must not be negative")
    cost = _number(body, "cost_usd", float)
    duration = _number(body, "duration", float)
    exit_code = _number(body, "exit_code", int)
    overhead = _number(body, "bot_overhead", float)
    if cost is not None and cost < 0:
        raise InvalidRequest("cost_usd must not be negative")
    if duration is not None and duration < 0:
        raise InvalidRequest("duration must not be negative")
    if (duration is None) != (exit_code is None):
        raise InvalidRequest("duration and exit_code go together: send both or neither")
    if overhead is not None and duration is None:
        raise InvalidRequest("bot_overhead needs duration")
    update = RunUpdate(
        cost_usd=cost,
        exit_code=exit_code,
        duration=duration,
        hard_timeout=_bool(body, "hard_timeout"),
        io_timeout=_bool(body, "io_timeout"),
        bot_overhead=overhead,
        canceled=_bool(body, "canceled"),
    )
    return TaskUpdateRequest(
        session=_session(body),
        bot_id=_str(body, "id"),
        run_id=_run_id(body),
        output=output,
        output_chunk_start=start,
        update=update,
        report=_report_items(body.get("results")),
        results_offset=_number(body, "results_offset", int) or 0,
    )


def _report_items(raw: object) -> TaskReport | None:
    """Parses `results`: {unit: [...], lint: [...], work: [{ts, message}]}, validated."""
    if raw is None:
        return None
    try:
        return reports.from_json(raw)
    except InvalidRequest as e:
        raise InvalidRequest(f"results: {e.detail}") from e


def parse_task_error(body: Mapping[str, Any]) -> TaskErrorRequest:
    """Parses a task_error; listed missing inputs make it a client error."""
    raw = body.get("client_error")
    client_error = False
    if raw is not None:
        if not isinstance(raw, dict):
            raise InvalidRequest("client_error must be an object")
        client_error = bool(raw.get("missing_cas")) or bool(raw.get("missing_cipd"))
    return TaskErrorRequest(
        session=_session(body),
        bot_id=_str(body, "id"),
        run_id=_run_id(body),
        message=_str(body, "message"),
        client_error=client_error,
    )


def _report(body: Mapping[str, Any]) -> BotReport:
    raw_dims = body.get("dimensions") or {}
    error = ""
    try:
        dims = validate_bot_dimensions(raw_dims)
    except InvalidRequest as e:
        dims, error = {}, e.detail
    state = body.get("state")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise InvalidRequest("state must be an object")
    return BotReport(
        dimensions=dims, state=state, version=_str(body, "version"), dimensions_error=error
    )


def _bot_id(body: Mapping[str, Any]) -> str:
    dims = body.get("dimensions")
    ids = dims.get("id") if isinstance(dims, dict) else None
    if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str):
        raise InvalidRequest("dimensions.id must hold exactly one bot ID")
    bot_id: str = ids[0]
    if not BOT_ID_RE.fullmatch(bot_id):
        raise InvalidRequest(f"dimensions.id {bot_id!r} is not a valid bot ID")
    return bot_id


def _run_id(body: Mapping[str, Any]) -> str:
    run_id = _str(body, "task_id")
    if not RUN_ID_RE.fullmatch(run_id) or run_id.endswith("0"):
        raise InvalidRequest(f"task_id {run_id!r} is not a run ID")
    return run_id


def _session(body: Mapping[str, Any]) -> str | None:
    value = body.get("session")
    # Bots send null when they have none (PROTOCOL.md 0.2.4 S1); any other
    # junk is treated as a bad session by the service, not a 400.
    return value if isinstance(value, str) and value else None


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string")
    return value


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} must be true or false")
    return value


def _number(body: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key} must be a number")
    if kind is int:
        if value != int(value):
            raise InvalidRequest(f"{key} must be a whole number")
        return int(value)
    return float(value)
