"""The task runner's side of task_update: what it sends the server about one run.

`Reporter` sends the run's updates (PROTOCOL.md 3.8): each carries the next
chunk of output at its byte offset (`stream.py`) and any structured results
(`results.py`), and only an acknowledged update drops them, so a failed one
is resent with the same bytes at the same offset. Every answer goes to the
runner's `on_answer` (`must_stop`, `paused`, a refreshed session). `report`
sends what is left once the command has exited, the completion riding on
the last chunk. `AuthFile` holds the bot's credentials, which the bot keeps
fresh in a file while the task runs.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional

from bot import results
from bot.remote import Remote, RemoteError
from bot.stream import OutputStream

log = logging.getLogger("drover_bot.task_runner")

# Cadence of PROTOCOL.md 3.8: the largest chunk (the server accepts ~340 KB
# bodies once base64-encoded) and how long buffered output may wait.
CHUNK_SIZE = 250_000
OUTPUT_INTERVAL = 3.0
FINAL_ATTEMPTS = 3
AUTH_RECHECK = 15.0


class AuthFile:
    """Credentials the bot keeps fresh in a file while the task runs."""

    def __init__(self, path: Optional[str]) -> None:
        self._path = path
        self._headers: Dict[str, str] = {}
        self._checked = -AUTH_RECHECK

    def headers(self) -> Dict[str, str]:
        """The latest headers, re-read at most every 15 s."""
        now = time.monotonic()
        if self._path and now - self._checked >= AUTH_RECHECK:
            self._checked = now
            try:
                with open(self._path, encoding="utf-8") as f:
                    self._headers = dict(json.load(f).get("headers") or {})
            except (OSError, ValueError) as e:
                log.warning("cannot read %s: %s", self._path, e)
        return self._headers


class Reporter:
    """Sends one run's task_updates and hands each answer to `on_answer`."""

    def __init__(
        self,
        remote: Remote,
        stream: OutputStream,
        results_file: results.ResultsFile,
        *,
        bot_id: str,
        task_id: str,
        begin: float,
        cost_usd_hour: float,
        on_answer: Callable[[Dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remote = remote
        self.stream = stream
        self.results = results_file
        self.bot_id = bot_id
        self.task_id = task_id
        # Monotonic time when the bot received the task (cost counts from it).
        self.begin = begin
        self.cost_usd_hour = cost_usd_hour
        self.on_answer = on_answer
        self.clock = clock
        # Set once the command has exited: the results file is complete then.
        self.exited = False
        self.last_ack = clock()

    def cost(self) -> float:
        """Cost so far, from the bot's advertised hourly cost."""
        return round(self.cost_usd_hour * (self.clock() - self.begin) / 3600.0, 8)

    def has_results(self) -> bool:
        """True when results wait to be sent."""
        return self.results.peek(final=self.exited) is not None

    def send(self, fields: Mapping[str, Any], with_output: bool) -> Optional[Dict[str, Any]]:
        """One task_update; the chunk it carries is dropped only once acknowledged.

        None when it failed (after the HTTP client's retries): the caller
        carries on, and the same bytes go again at the same offset next time.
        """
        body: Dict[str, Any] = {
            "cost_usd": self.cost(),
            "id": self.bot_id,
            "session": self.remote.session,
            "task_id": self.task_id,
            **fields,
        }
        offset, data = self.stream.peek(CHUNK_SIZE) if with_output else (0, b"")
        if data:
            body["output"] = base64.b64encode(data).decode("ascii")
            body["output_chunk_start"] = offset
        batch = self.results.peek(final=self.exited) if with_output else None
        if batch is not None:
            body["results_offset"], body["results"] = batch
        try:
            answer = self.remote.post_json(f"task_update/{self.task_id}", body)
        except RemoteError as e:
            log.warning("task_update failed (output kept for a retry): %s", e)
            return None
        if not answer:
            log.warning("task_update answered an empty object: treated as a failure")
            return None
        if data:
            self.stream.ack(offset, len(data))
        if batch is not None:
            self.results.ack()
        self.last_ack = self.clock()
        self.on_answer(answer)
        return answer

    def report(self, completion: Optional[Dict[str, Any]]) -> bool:
        """Sends all buffered output and results; `completion` rides on the last chunk.

        The completion goes only once every result is sent: the server takes
        no results for a task that has ended. Gives up after FINAL_ATTEMPTS
        failures in a row (each one already retried by the HTTP client); the
        unsent output is then lost.
        """
        # Nothing more will come to complete a secret's first bytes.
        self.stream.flush()
        failures = 0
        while failures < FINAL_ATTEMPTS:
            pending = self.stream.pending()
            is_last = pending <= CHUNK_SIZE and not self.has_results()
            if is_last and completion is None and not pending:
                return True
            fields = completion if is_last and completion is not None else {}
            if self.send(fields, with_output=True):
                failures = 0
                if is_last:
                    return True
            else:
                failures += 1
                time.sleep(OUTPUT_INTERVAL)
        return False
