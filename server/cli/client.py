"""A small synchronous client for the HTTP/JSON client API (DESIGN.md 4.2).

The CLI makes one request at a time, so the standard library's urllib is
enough. Failures become two exceptions: `ApiError` when the server answered
with an error (or with something that is not the API's JSON), `Unreachable`
when there was no usable answer at all.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from server import __version__

# One request may wait this long for an answer: every API call answers at once
# (nothing long-polls), so a longer wait means the server is stuck or far away.
TIMEOUT_SECS = 30.0

Query = Mapping[str, str | int | Sequence[str]]


class ApiError(Exception):
    """The server refused a request: `{"error": {"code", "message"}}` with a 4xx or 5xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def document(self) -> dict[str, Any]:
        """The error as the API's JSON document."""
        return {"error": {"code": self.code, "message": self.message}}


class Unreachable(Exception):
    """No usable answer from the server (refused, reset, timed out, not HTTP)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the server at {url}: {reason}")


class Client:
    """Calls one server's client API, with an optional bearer token."""

    def __init__(self, url: str, token: str = "", timeout: float = TIMEOUT_SECS) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def task_url(self, task_id: str) -> str:
        """Where a task's result can be read."""
        return f"{self.url}/api/v1/tasks/{quote(task_id)}"

    def get(self, path: str, query: Query | None = None) -> Any:
        """GETs `path` (under /api/v1) and returns the decoded JSON."""
        return _json(self._send("GET", path, query, None), self.url)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POSTs a JSON body to `path` (under /api/v1) and returns the decoded JSON."""
        return _json(self._send("POST", path, None, body or {}), self.url)

    def get_bytes(self, path: str) -> bytes:
        """GETs `path` (under /api/v1) and returns the raw body."""
        return self._send("GET", path, None, None)

    def _send(
        self, method: str, path: str, query: Query | None, body: Mapping[str, Any] | None
    ) -> bytes:
        url = f"{self.url}/api/v1{path}"
        if query:
            url += "?" + urllib.parse.urlencode(_pairs(query))
        headers = {"Accept": "application/json", "User-Agent": f"drover-cli/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                raw: bytes = response.read()
                return raw
        except urllib.error.HTTPError as e:
            raise _api_error(e) from None
        except urllib.error.URLError as e:
            raise Unreachable(self.url, str(e.reason)) from None
        except (OSError, ValueError) as e:
            # Timeouts, resets and malformed answers: all mean "no usable answer".
            raise Unreachable(self.url, str(e) or type(e).__name__) from None


def client_of(args: argparse.Namespace) -> Client:
    """The client the global options describe."""
    return Client(args.server, args.token)


def quote(segment: str) -> str:
    """A path segment, escaped ('/' included)."""
    return urllib.parse.quote(segment, safe="")


def _pairs(query: Query) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if isinstance(value, str | int):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, v) for v in value)
    return pairs


def _json(raw: bytes, url: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        message = f"the server at {url} did not answer with JSON; is it a Drover server?"
        raise ApiError(200, "", message) from None


def _api_error(e: urllib.error.HTTPError) -> ApiError:
    """The server's message if it sent an error document, else the HTTP status line."""
    try:
        error = json.loads(e.read())["error"]
        return ApiError(e.code, str(error["code"]), str(error["message"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ApiError(e.code, "", f"HTTP {e.code} {e.reason}")
