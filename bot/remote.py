"""The bot's HTTP client for the Swarming bot API (PROTOCOL.md 0.2.1 and 1.1).

Built on urllib so the bot needs nothing installed. Its retry rules are the
stock bot's, which the server is written against: connection errors, 5xx,
408, 429 and a non-JSON 404 are transient and retried with jittered backoff
within a total budget; a JSON 404 and every other 4xx are final. JSON calls
do not follow redirects (T8). Any JSON answer carrying a non-empty `session`
replaces the stored token (S1); the token is otherwise opaque.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from bot import backoff

log = logging.getLogger("drover_bot.remote")

API = "/swarming/api/v1/bot"
# Per-attempt connect/read timeout. The server holds polls at most ~45 s,
# so 60 s leaves room for a slow handler without dropping held answers.
ATTEMPT_TIMEOUT = 60.0
# Total time one call may spend retrying transient failures (PROTOCOL.md 0.4 #4).
CALL_BUDGET = 240.0
JSON_TYPE = "application/json; charset=UTF-8"

AuthHeaders = Callable[[], Mapping[str, str]]
Waiter = Callable[[float], bool]


class RemoteError(Exception):
    """The server gave no usable answer (after any retries)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Makes a 3xx on a JSON call an error instead of a silent GET elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _default_wait(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class Remote:
    """One bot's connection to its server: headers, retries and the session token."""

    def __init__(
        self,
        server: str,
        *,
        bot_id: str,
        version: str,
        hostname: Optional[str] = None,
        auth_headers: Optional[AuthHeaders] = None,
        session: Optional[str] = None,
        wait: Waiter = _default_wait,
    ) -> None:
        self.server = server.rstrip("/")
        self.bot_id = bot_id
        self.session = session
        self._user_agent = f"drover_bot/{version}@{hostname or socket.gethostname()}"
        self._auth_headers = auth_headers
        self._wait = wait
        self._json_opener = urllib.request.build_opener(_NoRedirect())
        self._get_opener = urllib.request.build_opener()

    # -- JSON calls ---------------------------------------------------------

    def post_json(
        self,
        name: str,
        body: Mapping[str, Any],
        *,
        timeout: float = ATTEMPT_TIMEOUT,
        budget: float = CALL_BUDGET,
    ) -> Dict[str, Any]:
        """POSTs `body` to `<API>/<name>` and returns the JSON object answer.

        Raises RemoteError when there is no usable answer: a final status, a
        body that is not a JSON object, an object with an `error` key, or
        transient failures beyond `budget` seconds (0 means one attempt).
        """
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
        url = f"{self.server}{API}/{name}"

        def request() -> urllib.request.Request:
            headers = {
                "Content-Type": JSON_TYPE,
                "X-Luci-Swarming-Bot-ID": self.bot_id,
                "User-Agent": self._user_agent,
                **self._auth(),
            }
            return urllib.request.Request(url, data=data, headers=headers, method="POST")

        status, _, raw = self._call(self._json_opener, request, timeout, budget)
        try:
            answer = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            raise RemoteError(f"{name}: HTTP {status} with a body that is not JSON", status) from e
        if not isinstance(answer, dict):
            raise RemoteError(f"{name}: the answer is not a JSON object", status)
        session = answer.get("session")
        if isinstance(session, str) and session:
            self.session = session
        if "error" in answer:
            raise RemoteError(f"{name}: server error: {answer['error']!r}", status)
        return answer

    def task_error(self, task_id: str, message: str) -> bool:
        """Reports an internal failure of run `task_id`; False if it could not be sent."""
        body: Dict[str, Any] = {
            "client_error": {"missing_cas": [], "missing_cipd": []},
            "id": self.bot_id,
            "message": message,
            "session": self.session,
            "task_id": task_id,
        }
        try:
            self.post_json(f"task_error/{task_id}", body)
        except RemoteError as e:
            log.error("could not send task_error for %s: %s", task_id, e)
            return False
        return True

    # -- GET calls ----------------------------------------------------------

    def ping(self, budget: float = 0.0, timeout: float = ATTEMPT_TIMEOUT) -> bool:
        """GETs server_ping; True on a 2xx. Sends no bot ID, like the stock bot."""
        url = f"{self.server}{API}/server_ping"

        def request() -> urllib.request.Request:
            return urllib.request.Request(url, headers={"User-Agent": self._user_agent})

        try:
            self._call(self._get_opener, request, timeout, budget)
        except RemoteError as e:
            log.warning("server_ping failed: %s", e)
            return False
        return True

    def get_bot_code(self, version: str, budget: float = CALL_BUDGET) -> bytes:
        """Downloads the archive with this digest (redirects are followed)."""
        url = f"{self.server}{API}/bot_code/{version}"

        def request() -> urllib.request.Request:
            headers = {
                "X-Luci-Swarming-Bot-ID": self.bot_id,
                "User-Agent": self._user_agent,
                **self._auth(),
            }
            return urllib.request.Request(url, headers=headers)

        return self._call(self._get_opener, request, ATTEMPT_TIMEOUT, budget)[2]

    # -- internals ----------------------------------------------------------

    def _auth(self) -> Dict[str, str]:
        if self._auth_headers is None:
            return {}
        try:
            return dict(self._auth_headers())
        except Exception:
            # A broken hook must not stop the bot from talking to its server.
            log.exception("get_authentication_headers failed; sending no credentials")
            return {}

    def _call(
        self,
        opener: urllib.request.OpenerDirector,
        make_request: Callable[[], urllib.request.Request],
        timeout: float,
        budget: float,
    ) -> Tuple[int, str, bytes]:
        """Sends until a final answer; returns (status, content type, body) of a 2xx."""
        deadline = time.monotonic() + budget
        attempt = 0
        status: Optional[int] = None
        while True:
            attempt += 1
            req = make_request()
            try:
                with opener.open(req, timeout=timeout) as resp:
                    return int(resp.status), resp.headers.get("Content-Type", ""), resp.read()
            except urllib.error.HTTPError as e:
                ctype = e.headers.get("Content-Type", "") if e.headers else ""
                body = _read_quietly(e)
                problem = f"HTTP {e.code} from {req.full_url}: {body[:200]!r}"
                status = e.code
                if not _is_transient(e.code, ctype):
                    raise RemoteError(problem, e.code) from e
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                problem = f"{req.full_url}: {e!r}"
                status = None
            delay = backoff.http_delay(attempt)
            if time.monotonic() + delay > deadline:
                raise RemoteError(f"giving up after {attempt} attempt(s): {problem}", status)
            log.info("retrying in %.1fs: %s", delay, problem)
            if self._wait(delay):
                raise RemoteError(f"interrupted while retrying: {problem}", status)


def _is_transient(status: int, content_type: str) -> bool:
    """The stock bot's rule: worth retrying, or final (PROTOCOL.md 0.2.1 T3/T4)."""
    if status >= 500 or status in (408, 429):
        return True
    # A 404 that is not JSON comes from a proxy or a server that is not up
    # yet, not from the bot API, which answers its 404s in JSON.
    return status == 404 and not content_type.lower().startswith("application/json")


def _read_quietly(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read()
    except (OSError, http.client.HTTPException):
        return b""
    finally:
        e.close()
