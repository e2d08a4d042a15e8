"""The task runner: a child process of the bot that runs one task's command.

The bot writes `w/task_runner_in.json` and starts `<bot code> task_runner
--in ... --out ...`; a crash here costs one task, never the bot. This
process sends the first task_update before anything runs (a `must_stop`
answer cancels the task, PROTOCOL.md 3.7 step 3), runs the command in a
fresh `w/ir` in its own process group, streams its merged output at byte
offsets (`stream.py`), lets `supervisor.py` enforce timeouts and stops,
kills whatever the task left behind, reports the completion, and writes
`--out` for the bot. An internal failure is written there as
`internal_failure`: the bot turns it into a task_error. If the bot itself
dies meanwhile, the runner stops the task and sends the task_error itself.
Structured results the task appends to $DROVER_RESULTS_FILE (`results.py`)
ride on the output's task_updates, all of them before the completion; the
updates themselves are `reporter.py`'s.

Every task_update answer carries `paused` (our server only; absent means
false): the supervisor pauses or resumes the group to match. While paused
the heartbeat is faster, since the next answer is what resumes the task.
The reported `duration` is wall time, paused time included; the total paused
time goes to `paused_file` so the bot's last-resort timeout can allow for it.

A task whose manifest names a service account gets tokens from a local auth
server that lives in this process for exactly the task's life
(`local_auth.py`, described to the task by `LUCI_CONTEXT`); every token it
hands out, and its secret, are masked in the task's output.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from bot import local_auth, manifest, results
from bot.remote import Remote
from bot.reporter import CHUNK_SIZE, OUTPUT_INTERVAL, AuthFile, Reporter
from bot.stream import OutputStream, chunk_ready
from bot.supervisor import Supervisor, become_subreaper, end_group, kill_group

log = logging.getLogger("drover_bot.task_runner")

# The heartbeat that keeps the run alive on the server when there is no
# output (the output cadence is reporter.py's, PROTOCOL.md 3.8).
HEARTBEAT = 10.0
# While paused only a heartbeat's answer can resume the task: this is the
# worst-case resume latency (pause latency is the normal cadence above).
PAUSED_HEARTBEAT = 2.0
# How stale the paused time in `paused_file` may be: the bot's last-resort
# timeout has 20 minutes of slack, so a few seconds do not matter.
PAUSED_RECORD_STEP = 5.0
# With no acknowledged update for this long the server has declared the run
# dead (default bot_ping_tolerance_secs), so stop paying for it.
CONTACT_LOST = 1200.0
# Once the task's group is gone, how long to wait for its output pipe to
# close (a process that left the group may still hold it open).
DRAIN_AFTER_EXIT = 1.0
# How long the SIGKILLed remains of a task may take to disappear.
GROUP_END_TIMEOUT = 2.0
CONTEXT_FILE = "luci_context.json"


class ReportError(Exception):
    """The server could not be told about the task."""


class TaskRun:
    """One task, from the first update to the final one."""

    def __init__(self, params: Mapping[str, Any], clock: Callable[[], float] = time.monotonic):
        self.params = params
        self.manifest: Dict[str, Any] = dict(params["manifest"])
        self.task_id = str(self.manifest.get("task_id") or "")
        self.bot_id = str(params["bot_id"])
        self.clock = clock
        # Monotonic time when the bot received the task (bot_overhead counts from it).
        self.begin = clock() - max(
            0.0, time.time() - float(params.get("started_ts") or time.time())
        )
        self.auth = AuthFile(params.get("auth_file"))
        self.remote = Remote(
            str(params["server"]),
            bot_id=self.bot_id,
            version=str(params.get("version") or ""),
            auth_headers=self.auth.headers,
            session=params.get("session"),
        )
        self.stream = OutputStream(clock)
        # Structured results the task writes; sent with the output (bot/results.py).
        self.results = results.ResultsFile(os.path.join(str(params["work_dir"]), results.FILE_NAME))
        self.reporter = Reporter(
            self.remote,
            self.stream,
            self.results,
            bot_id=self.bot_id,
            task_id=self.task_id,
            begin=self.begin,
            cost_usd_hour=float(params.get("cost_usd_hour") or 0.0),
            on_answer=self._on_answer,
            clock=clock,
        )
        self.supervisor: Optional[Supervisor] = None
        self.stop_reason: Optional[str] = None
        # What the last task_update answer asked for.
        self.paused = False
        # The bot that started this runner; a different parent means it died.
        self.bot_pid = os.getppid()
        self.orphaned = False
        self.reader: Optional[threading.Thread] = None
        self.result: Dict[str, Any] = {"final_reported": False}

    # -- the protocol side ---------------------------------------------------

    def _on_answer(self, answer: Dict[str, Any]) -> None:
        """Does what a task_update answer asks: stop, pause or resume."""
        if answer.get("must_stop"):
            self.request_stop(f"server: {answer.get('stop_reason') or 'must_stop'}")
        self.paused = answer.get("paused") is True
        if self.supervisor is not None:
            self.supervisor.set_paused(self.paused)
        self.result["session"] = self.remote.session

    def request_stop(self, reason: str) -> None:
        """Stops the command (now, or as soon as it has started)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.supervisor is not None:
            self.supervisor.request_stop(reason)

    # -- the task side -------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        """Runs the task; returns the summary the bot reads from `--out`."""
        run_dir = os.path.join(str(self.params["work_dir"]), "ir")
        spec = manifest.parse(self.manifest, run_dir)
        env = manifest.task_environment(
            self.manifest,
            os.environ,
            run_dir,
            {
                "SWARMING_BOT_ID": self.bot_id,
                "SWARMING_HEADLESS": "1",
                "SWARMING_SERVER": str(self.params["server"]),
                "SWARMING_TASK_ID": self.task_id,
                results.ENV_VAR: self.results.path,
            },
        )
        first = self.reporter.send({"cost_usd": 0}, with_output=False)
        if first is None:
            raise ReportError("Failed to contact server for the first task_update")
        if first.get("must_stop"):
            log.info("the server stopped the task before it started")
            done = self.reporter.send({"canceled": True}, with_output=False)
            self.result.update(canceled=True, final_reported=done is not None)
            return self.result
        _fresh_dir(run_dir)
        os.makedirs(spec.cwd, exist_ok=True)
        auth: Optional[local_auth.LocalAuthServer] = None
        try:
            auth = self._start_local_auth(env)
            self._execute(spec, env)
        finally:
            if auth is not None:
                auth.stop()
            if self.supervisor is not None:
                # Nothing the task started may outlive it.
                kill_group(self.supervisor.pgid, signal.SIGKILL)
            if self.reader is not None:
                # The group is dead, so the pipe closes unless something
                # that left the group still holds it; the thread is a daemon.
                self.reader.join(DRAIN_AFTER_EXIT)
            shutil.rmtree(run_dir, ignore_errors=True)
        return self.result

    def _start_local_auth(self, env: Dict[str, str]) -> Optional[local_auth.LocalAuthServer]:
        """Starts the task's token server if it has an account; sets LUCI_CONTEXT in `env`."""
        path = os.path.join(str(self.params["work_dir"]), CONTEXT_FILE)
        auth = local_auth.start_for_task(
            self.remote,
            self.manifest,
            bot_id=self.bot_id,
            server=str(self.params["server"]),
            context_path=path,
            on_token=lambda token: self.stream.add_secret(token.encode("utf-8")),
        )
        if auth is not None:
            env[local_auth.CONTEXT_ENV] = path
        return auth

    def _execute(self, spec: manifest.TaskSpec, env: Dict[str, str]) -> None:
        start = self.clock()
        try:
            proc = subprocess.Popen(
                spec.command,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            # The task's own mistake (say a typo in the command): an ordinary failure.
            self.stream.append(f"drover_bot: cannot start {spec.command[0]!r}: {e}\n".encode())
            self._finish(
                {"exit_code": 1, "duration": 0.0, "hard_timeout": False, "io_timeout": False}
            )
            return
        assert proc.stdout is not None
        pid_file = self.params.get("pid_file")
        if pid_file:
            with open(str(pid_file), "w", encoding="ascii") as f:
                f.write(str(proc.pid))
        # The I/O timeout counts from the start of the command, not of the task.
        self.stream.last_output = self.clock()
        self.reader = self.stream.start_reader(proc.stdout.fileno())
        sup = self.supervisor = Supervisor(
            proc,
            self.stream,
            hard_timeout=spec.hard_timeout,
            io_timeout=spec.io_timeout,
            grace_period=spec.grace_period,
            clock=self.clock,
        )
        if self.stop_reason is not None:
            sup.request_stop(self.stop_reason)
        sup.set_paused(self.paused)
        sup.start()
        last_send = self.clock()
        paused_written = 0.0
        while sup.exited_at is None:
            self.stream.wait(CHUNK_SIZE, 0.1)
            now = self.clock()
            heartbeat = PAUSED_HEARTBEAT if self.paused or sup.is_paused else HEARTBEAT
            has_results = now - last_send >= OUTPUT_INTERVAL and self.reporter.has_results()
            if sup.exited_at is None and (
                has_results
                or chunk_ready(
                    self.stream.pending(), now, last_send, CHUNK_SIZE, OUTPUT_INTERVAL, heartbeat
                )
            ):
                self.reporter.send({}, with_output=True)
                last_send = self.clock()
            paused_for = sup.paused_for(now)
            if paused_for - paused_written >= PAUSED_RECORD_STEP:
                paused_written = paused_for
                _write_paused(self.params.get("paused_file"), paused_for)
            if self.clock() - self.reporter.last_ack > CONTACT_LOST:
                sup.request_stop("no task_update acknowledged for too long")
            if not self.orphaned and os.getppid() != self.bot_pid:
                # The bot died (kill -9, OOM): nobody would read our result
                # or clean up, so end the task now and say why.
                self.orphaned = True
                self.request_stop("the bot process died")
        sup.join()
        # Whatever the task left running in its group goes now, before the
        # completion is reported: a finished task has no process left.
        if not end_group(sup.pgid, GROUP_END_TIMEOUT):
            log.warning("process group %d is not gone after SIGKILL", sup.pgid)
        self.stream.wait_eof(DRAIN_AFTER_EXIT)
        self.reporter.exited = True
        if self.orphaned:
            self.reporter.report(None)
            self.remote.task_error(self.task_id, "The bot process died during the task")
            self.result["internal_failure"] = "the bot process died"
            return
        exited = sup.exited_at or self.clock()
        completion: Dict[str, Any] = {
            "exit_code": proc.returncode,
            "duration": round(exited - start, 3),
            "hard_timeout": sup.hard_timeout,
            "io_timeout": sup.io_timeout,
        }
        self._finish(completion)

    def _finish(self, completion: Dict[str, Any]) -> None:
        """Sends what is left of the output, then the completion with the last chunk."""
        self.result.update(completion)
        completion = dict(completion)
        completion["bot_overhead"] = round(
            max(0.0, self.clock() - self.begin - float(completion["duration"])), 3
        )
        if self.reporter.report(completion):
            self.result["final_reported"] = True
        else:
            self.result["internal_failure"] = "Failed to report the task's completion to the server"


def _write_paused(path: Optional[str], seconds: float) -> None:
    """Tells the bot how long the task has been paused so far."""
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{seconds:.3f}")
    os.replace(tmp, path)


def _fresh_dir(path: str) -> None:
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def main(in_path: str, out_path: str) -> int:
    """Entry point of `task_runner`; 0 when `out_path` holds a summary."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s task_runner: %(message)s"
    )
    with open(in_path, encoding="utf-8") as f:
        params = json.load(f)
    run = TaskRun(params)
    become_subreaper()

    def on_sigterm(signum: int, frame: object) -> None:
        # The bot is shutting down: stop the task, then report it as usual.
        run.request_stop("the bot is shutting down")

    signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C in the bot's terminal reaches the runner too (same process group).
    signal.signal(signal.SIGINT, on_sigterm)
    try:
        result = run.run()
    except (manifest.ManifestError, ReportError) as e:
        result = {"internal_failure": str(e), "session": run.remote.session}
    except Exception as e:
        log.exception("task runner failed")
        result = {"internal_failure": f"task_runner: {e!r}", "session": run.remote.session}
    result.setdefault("session", run.remote.session)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, sort_keys=True)
    os.replace(tmp, out_path)
    return 0
