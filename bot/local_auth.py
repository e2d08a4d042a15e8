"""Tokens for the task: a local auth server in the spirit of LUCI_CONTEXT `local_auth`.

When the manifest names a service account (`service_accounts.task` or
`.system`), the task runner starts this server on 127.0.0.1 (a free port)
for the life of the task, and the task's environment gets `LUCI_CONTEXT`,
the path of a JSON file:

    {"local_auth": {"rpc_port": 41234, "secret": "...",
                    "accounts": [{"id": "task", "email": "ci@example.com"}],
                    "default_account_id": "task"},
     "swarming": {"task": {"server": "...", "task_id": "...", "bot_id": "..."}}}

A tool in the task POSTs JSON to
`http://127.0.0.1:<rpc_port>/rpc/LuciLocalAuthService.GetOAuthToken` with
`{"account_id": "task", "scopes": [...], "secret": "<secret>"}` and gets
`{"access_token": "drt_...", "expiry": <unix time>}`, or to `.../GetIDToken`
with `{"account_id", "audience", "secret"}` and gets `{"id_token", "expiry"}`.
That is the protocol of LUCI's local auth server, so LUCI tools work as is.
A wrong secret is 403, a malformed request 400; a token the server refused
is a 200 with `error_code` (the server's HTTP status) and `error_message`.

Every answer has at least MIN_LIFETIME left: tokens are cached and asked
for again from the server (with the bot's session, like its other calls)
once they get closer to expiry, so a task that asks before each use never
holds an expired one. Each token handed out is first given to `on_token`
(the output stream masks it in the task's log). Task account "bot" means
the bot's own credentials: the system account's tokens. Nothing here logs
a token or the secret.
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import os
import secrets
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from bot.remote import Remote, RemoteError

log = logging.getLogger("drover_bot.local_auth")

OAUTH_PATH = "/rpc/LuciLocalAuthService.GetOAuthToken"
ID_TOKEN_PATH = "/rpc/LuciLocalAuthService.GetIDToken"
CONTEXT_ENV = "LUCI_CONTEXT"
# A token handed to the task is good for at least this long; the server's
# tokens live 15 minutes, so a task sees each one for about 10.
MIN_LIFETIME = 300.0
# How long one token request may wait on the server, retries included.
SERVER_BUDGET = 60.0
MAX_BODY = 64 * 1024
NOT_AN_ACCOUNT = ("", "none", "bot")


class TokenError(Exception):
    """The server would not give a token; `code` is its HTTP status (500 if none)."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.code = code


def accounts_of(manifest: Mapping[str, Any]) -> Dict[str, Tuple[str, str]]:
    """The accounts a task may get tokens for: {local id: (email, account to ask the server)}.

    A task account of "bot" stands for the bot's own credentials, which for
    this bot are its system account's: "task" then asks for "system" tokens.
    """
    raw = manifest.get("service_accounts")
    raw = raw if isinstance(raw, dict) else {}
    emails: Dict[str, str] = {}
    for account_id in ("task", "system"):
        entry = raw.get(account_id)
        email = entry.get("service_account") if isinstance(entry, dict) else None
        if isinstance(email, str):
            emails[account_id] = email
    found = {a: (e, a) for a, e in emails.items() if e not in NOT_AN_ACCOUNT}
    if emails.get("task") == "bot" and "system" in found:
        found["task"] = (found["system"][0], "system")
    return found


class TokenSource:
    """Fresh tokens from the server for one run, cached until close to expiry."""

    def __init__(
        self,
        remote: Remote,
        *,
        bot_id: str,
        run_id: str,
        manifest: Mapping[str, Any],
        on_token: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._remote = remote
        self._bot_id = bot_id
        self._run_id = run_id
        self._on_token = on_token
        self._clock = clock
        # {local account id: (email, the account asked of the server)}
        self._accounts = accounts_of(manifest)
        self.accounts = {a: email for a, (email, _) in self._accounts.items()}
        self._cache: Dict[Tuple[str, ...], Tuple[str, float]] = {}
        self._lock = threading.Lock()

    def oauth_token(self, account_id: str, scopes: List[str]) -> Tuple[str, float]:
        """(access token, expiry) for the account."""
        return self._get(
            ("oauth", account_id, *sorted(scopes)),
            "oauth_token",
            account_id,
            {"scopes": sorted(scopes)},
        )

    def id_token(self, account_id: str, audience: str) -> Tuple[str, float]:
        """(ID token, expiry) for the account and audience."""
        return self._get(
            ("id", account_id, audience), "id_token", account_id, {"audience": audience}
        )

    def _get(
        self, key: Tuple[str, ...], endpoint: str, account_id: str, extra: Dict[str, Any]
    ) -> Tuple[str, float]:
        if account_id not in self.accounts:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise TokenError(f"no account {account_id!r} in this task (accounts: {known})", 404)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] - self._clock() >= MIN_LIFETIME:
                return cached
            token, expiry = self._fetch(endpoint, self._accounts[account_id][1], extra)
            self._on_token(token)
            self._cache[key] = (token, expiry)
            return token, expiry

    def _fetch(self, endpoint: str, account_id: str, extra: Dict[str, Any]) -> Tuple[str, float]:
        body: Dict[str, Any] = {
            "account_id": account_id,
            "id": self._bot_id,
            "session": self._remote.session,
            "task_id": self._run_id,
            **extra,
        }
        try:
            answer = self._remote.post_json(endpoint, body, budget=SERVER_BUDGET)
        except RemoteError as e:
            raise TokenError(f"{endpoint}: {e}", e.status or 500) from e
        field = "access_token" if endpoint == "oauth_token" else "id_token"
        token, expiry = answer.get(field), answer.get("expiry")
        if not isinstance(token, str) or not token or not isinstance(expiry, (int, float)):
            account = answer.get("service_account")
            raise TokenError(f"{endpoint}: the server minted no token (account {account!r})")
        return token, float(expiry)


class LocalAuthServer:
    """The task's local token endpoint; `start` it, `stop` it when the task ends."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self.secret = secrets.token_urlsafe(32)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="local-auth",
            daemon=True,
        )

    def start(self) -> None:
        """Starts answering in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stops answering and closes the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def context(self, server: str, task_id: str, bot_id: str) -> Dict[str, Any]:
        """The LUCI_CONTEXT document describing this server to the task."""
        accounts = [{"id": a, "email": e} for a, e in sorted(self.source.accounts.items())]
        local_auth: Dict[str, Any] = {
            "accounts": accounts,
            "rpc_port": self.port,
            "secret": self.secret,
        }
        if "task" in self.source.accounts:
            local_auth["default_account_id"] = "task"
        return {
            "local_auth": local_auth,
            "swarming": {"task": {"bot_id": bot_id, "server": server, "task_id": task_id}},
        }

    def answer(self, path: str, raw: bytes) -> Tuple[int, Dict[str, Any]]:
        """(HTTP status, JSON answer) for one request; the HTTP handler's logic."""
        if path not in (OAUTH_PATH, ID_TOKEN_PATH):
            return 404, {"error": f"no such method {path}"}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, {"error": "the body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        secret = body.get("secret")
        if not isinstance(secret, str) or not hmac.compare_digest(
            secret.encode("utf-8"), self.secret.encode("utf-8")
        ):
            return 403, {"error": "wrong secret"}
        account_id = body.get("account_id") or ""
        if not isinstance(account_id, str):
            return 400, {"error": "account_id must be a string"}
        account_id = account_id or ("task" if "task" in self.source.accounts else "")
        try:
            if path == OAUTH_PATH:
                scopes = body.get("scopes")
                if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                    return 400, {"error": "scopes must be a list of strings"}
                token, expiry = self.source.oauth_token(account_id, scopes)
                return 200, {"access_token": token, "expiry": int(expiry)}
            audience = body.get("audience")
            if not isinstance(audience, str) or not audience:
                return 400, {"error": "audience is required"}
            token, expiry = self.source.id_token(account_id, audience)
            return 200, {"expiry": int(expiry), "id_token": token}
        except TokenError as e:
            log.warning("no token for the task: %s", e)
            return 200, {"error_code": e.code, "error_message": str(e)}

    def _handler(self) -> type:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    status, answer = 400, {"error": "the body is too large"}
                else:
                    status, answer = server.answer(self.path, self.rfile.read(length))
                data = json.dumps(answer, sort_keys=True).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                # The default writes every request to stderr; the task's log
                # has no use for it.
                pass

        return Handler


def write_context(path: str, document: Mapping[str, Any]) -> None:
    """Writes the LUCI_CONTEXT file, readable by the task's user only."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(document, f, sort_keys=True)
    os.replace(tmp, path)


def start_for_task(
    remote: Remote,
    manifest: Mapping[str, Any],
    *,
    bot_id: str,
    server: str,
    context_path: str,
    on_token: Callable[[str], None],
) -> Optional[LocalAuthServer]:
    """Starts the local auth server for a task whose manifest names an account.

    Returns None (and starts nothing) when there is no account to serve.
    Writes the LUCI_CONTEXT file at `context_path`; the secret goes to
    `on_token` too, so the task's log never shows it.
    """
    run_id = str(manifest.get("task_id") or "")
    source = TokenSource(remote, bot_id=bot_id, run_id=run_id, manifest=manifest, on_token=on_token)
    if not source.accounts:
        return None
    auth = LocalAuthServer(source)
    on_token(auth.secret)
    # LUCI_CONTEXT names the task by its summary ID (PROTOCOL.md 3.7 step 3).
    write_context(context_path, auth.context(server, run_id[:-1] + "0", bot_id))
    auth.start()
    return auth
