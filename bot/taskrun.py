"""One task on the bot's side: claim it, run the task runner, report its fate.

The bot never runs a task's command itself. It confirms the reservation
(`claim`, idempotent by `claim_id`), prepares `w/`, calls `on_before_task`,
starts the task runner as a child process (so a crash there cannot take the
bot down), keeps its credentials fresh, forwards a SIGTERM, and kills it if
it hangs. Whatever went wrong inside becomes a `task_error` (PROTOCOL.md
1.9); then `on_after_task` runs and `w/` is deleted. A task that a killed
bot left running is stopped when the next bot starts in the directory.
The last-resort timeout allows for the time the task spent paused, which
the runner records in `w/task_paused_secs`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional

from bot.context import BotContext
from bot.remote import RemoteError
from bot.supervisor import kill_group

log = logging.getLogger("drover_bot.task")

WORK_DIR = "w"
IN_FILE = "task_runner_in.json"
OUT_FILE = "task_runner_out.json"
AUTH_FILE = "bot_auth_headers.json"
PID_FILE = "command.pid"
PAUSED_FILE = "task_paused_secs"
# An empty file hooks and the task may use to pass data (stock: SWARMING_BOT_FILE).
BOT_FILE = "bot_file"
RUNNER_LOG = os.path.join("logs", "task_runner.log")
# The stock bot's last-resort timeout (PROTOCOL.md 3.7 step 2), grace at least 30 s.
MIN_GRACE = 30.0
IO_FLOOR = 1200.0
# How long a task runner that was told to stop may take to report, beyond
# the task's grace period, before it is killed.
STOP_MARGIN = 90.0
HUNG_KILL_AFTER = 30.0
AUTH_REFRESH = 15.0


def _num(manifest: Mapping[str, Any], key: str, default: float) -> float:
    value = manifest.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def last_resort_timeout(manifest: Mapping[str, Any]) -> Optional[float]:
    """When to give up on the task runner: hard + 3*grace + max(io, 1200).

    None for a task without a hard timeout: it may legitimately run forever.
    """
    hard = _num(manifest, "hard_timeout", 0.0)
    if hard <= 0:
        return None
    grace = max(_num(manifest, "grace_period", MIN_GRACE), MIN_GRACE)
    return hard + 3 * grace + max(_num(manifest, "io_timeout", 0.0), IO_FLOOR)


def claim(ctx: BotContext, manifest: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Confirms the reservation; the manifest to run, or None to drop the task.

    Without a usable answer the bot goes ahead anyway: the first task_update
    confirms the reservation too, and answers must_stop if it is gone.
    """
    body = {
        "claim_id": uuid.uuid4().hex,
        "dimensions": ctx.dimensions,
        "session": ctx.remote.session,
        "state": ctx.state,
        "task_id": manifest["task_id"],
    }
    try:
        answer = ctx.remote.post_json("claim", body)
    except RemoteError as e:
        log.warning("claim got no answer, relying on the first task_update: %s", e)
        return manifest
    if answer.get("cmd") == "run":
        claimed = answer.get("manifest")
        return claimed if isinstance(claimed, dict) else manifest
    log.info("dropping task %s: %s", manifest["task_id"], answer.get("reason") or answer)
    return None


def send_task_error(ctx: BotContext, task_id: str, message: str) -> None:
    """Reports an internal failure of the run (the server ends it as BOT_DIED)."""
    log.error("task %s failed internally: %s", task_id, message)
    ctx.remote.task_error(task_id, message)


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, sort_keys=True)
    os.replace(tmp, path)


def _tail(path: str, size: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_task(ctx: BotContext, manifest: Dict[str, Any]) -> None:
    """Runs the task of a `run` answer to the end (returns when it is reported)."""
    received = time.time()
    task_id = manifest.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"the run manifest has no task_id: {sorted(manifest)}")
    claimed = claim(ctx, manifest)
    if claimed is None:
        return
    manifest = claimed
    work = os.path.join(ctx.rt.base_dir, WORK_DIR)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(os.path.join(ctx.rt.base_dir, "logs"), exist_ok=True)
    paths = {
        name: os.path.join(work, name)
        for name in (IN_FILE, OUT_FILE, AUTH_FILE, PID_FILE, PAUSED_FILE)
    }
    bot_file = os.path.join(work, BOT_FILE)
    open(bot_file, "wb").close()
    _write_json(paths[AUTH_FILE], {"headers": ctx.remote_auth_headers()})
    _write_json(
        paths[IN_FILE],
        {
            "auth_file": paths[AUTH_FILE],
            "bot_id": ctx.bot_id,
            "cost_usd_hour": ctx.state.get("cost_usd_hour") or 0.0,
            "manifest": manifest,
            "paused_file": paths[PAUSED_FILE],
            "pid_file": paths[PID_FILE],
            "server": ctx.rt.server,
            "session": ctx.remote.session,
            "started_ts": received,
            "version": ctx.rt.version,
            "work_dir": work,
        },
    )
    runner_cmd = ctx.rt.command("task_runner", "--in", paths[IN_FILE], "--out", paths[OUT_FILE])
    # The runner's environment is the task's base environment.
    runner_env = dict(os.environ, SWARMING_BOT_FILE=bot_file)
    ctx.info.task = manifest
    try:
        # The stock hook signature: hooks may edit runner_cmd and runner_env in place.
        for error in ctx.hooks.call_both(
            "on_before_task", ctx.info, bot_file, runner_cmd, runner_env
        ):
            ctx.report_error(error)
        message = _run_runner(ctx, manifest, runner_cmd, runner_env, paths)
        result: Dict[str, Any] = {}
        if message is None:
            try:
                with open(paths[OUT_FILE], encoding="utf-8") as f:
                    result = json.load(f)
            except (OSError, ValueError) as e:
                log_tail = _tail(os.path.join(ctx.rt.base_dir, RUNNER_LOG))
                message = f"task_runner left no readable result: {e!r}: {log_tail}"
        _finish(ctx, manifest, result, message)
    finally:
        ctx.info.task = None
    shutil.rmtree(work, ignore_errors=True)


def _finish(
    ctx: BotContext, manifest: Mapping[str, Any], result: Dict[str, Any], message: Optional[str]
) -> None:
    """Reports an internal failure, takes the runner's session, runs on_after_task."""
    task_id = str(manifest.get("task_id"))
    ctx.adopt_session(result.get("session"))
    message = message or result.get("internal_failure")
    if message:
        send_task_error(ctx, task_id, str(message))
    exit_code = result.get("exit_code")
    summary = {k: v for k, v in result.items() if k != "session"}  # hooks get no credentials
    for error in ctx.hooks.call_both(
        "on_after_task",
        ctx.info,
        exit_code not in (None, 0),
        bool(message),
        manifest.get("dimensions") or {},
        summary,
    ):
        ctx.report_error(error)


def _run_runner(
    ctx: BotContext,
    manifest: Mapping[str, Any],
    cmd: List[str],
    env: Dict[str, str],
    paths: Mapping[str, str],
) -> Optional[str]:
    """Runs the task runner to its end; an error message if it did not end well."""
    grace = _num(manifest, "grace_period", MIN_GRACE)
    limit = last_resort_timeout(manifest)
    start = time.monotonic()
    # The runner stays in the bot's process group: whatever signals the
    # whole bot (Ctrl-C, a service manager, `kill -9 -<pgid>`) reaches it too.
    with open(os.path.join(ctx.rt.base_dir, RUNNER_LOG), "wb") as runner_log:
        proc = subprocess.Popen(
            cmd,
            cwd=ctx.rt.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=runner_log,
            stderr=subprocess.STDOUT,
        )
    forwarded = hung = False
    kill_at: Optional[float] = None
    last_auth = start
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if ctx.quit.is_set() and not forwarded:
            # The runner stops the command, reports it, then exits.
            log.info("forwarding SIGTERM to the task runner")
            forwarded = True
            proc.send_signal(signal.SIGTERM)
            kill_at = now + grace + STOP_MARGIN
        if (
            limit is not None
            and not hung
            and now - start > limit
            # Paused time does not count; the file is read only once it matters.
            and now - start > limit + _paused_secs(paths[PAUSED_FILE])
        ):
            hung = True
            proc.terminate()
            kill_at = now + HUNG_KILL_AFTER
        if kill_at is not None and now > kill_at:
            proc.kill()
            kill_at = None
        if now - last_auth >= AUTH_REFRESH:
            last_auth = now
            _write_json(paths[AUTH_FILE], {"headers": ctx.remote_auth_headers()})
    if hung or code != 0:
        # The runner could not clean up after the command: do it here.
        kill_leftover_task(os.path.dirname(paths[PID_FILE]))
    if hung:
        return "task_runner hung"
    if code != 0:
        return f"task_runner exited with {code}: {_tail(os.path.join(ctx.rt.base_dir, RUNNER_LOG))}"
    return None


def _paused_secs(path: str) -> float:
    """How long the task was paused so far, as its runner last recorded it."""
    try:
        with open(path, encoding="ascii") as f:
            return max(0.0, float(f.read()))
    except (OSError, ValueError):
        return 0.0


def kill_leftover_task(work: str) -> bool:
    """Kills the process group of a task whose runner is gone; True if there was one.

    The group ID comes from `w/command.pid`. Before killing, the group
    leader's working directory must still be inside `w/`: after a host
    reboot the same number may belong to an unrelated process.
    """
    try:
        with open(os.path.join(work, PID_FILE), encoding="ascii") as f:
            pgid = int(f.read().strip())
        cwd = os.readlink(f"/proc/{pgid}/cwd")
    except (OSError, ValueError):
        return False
    if not cwd.startswith(os.path.join(os.path.realpath(work), "")):
        return False
    log.warning("killing process group %d left by a task (cwd %s)", pgid, cwd)
    kill_group(pgid, signal.SIGKILL)
    return True


def clean_work_dir(base_dir: str) -> None:
    """At startup: stops a task a previous bot process left running, removes `w/`."""
    work = os.path.join(base_dir, WORK_DIR)
    if os.path.isdir(work):
        kill_leftover_task(work)
        shutil.rmtree(work, ignore_errors=True)
