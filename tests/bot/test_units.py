"""Pure pieces of the bot: backoff, dimensions, output buffer, task environment."""

from __future__ import annotations

import os
import random

import pytest

from bot import backoff, dims, manifest, stream, taskrun


def test_poll_backoff_first_retry_is_immediate_then_grows_to_a_cap() -> None:
    """1.4^(n-1) jittered by ±20 %, 0 for the first retry, never above 300 s."""
    rng = random.Random(1)
    assert backoff.poll_delay(1, rng) == 0.0
    for n in range(2, 12):
        delay = backoff.poll_delay(n, rng)
        assert 0.8 * 1.4 ** (n - 1) <= delay <= 1.2 * 1.4 ** (n - 1)
    assert backoff.poll_delay(100, rng) == backoff.MAX_DELAY


def test_error_throttle_reports_each_message_once_per_interval() -> None:
    """The same bot_error is sent again only after ten minutes."""
    now = [0.0]
    throttle = backoff.ErrorThrottle(clock=lambda: now[0])
    assert throttle.should_report("boom")
    assert not throttle.should_report("boom")
    assert throttle.should_report("other")
    now[0] = 601.0
    assert throttle.should_report("boom")


def test_server_dimensions_win_and_name_the_config() -> None:
    """bots.cfg keys replace the bot's own and bot_config names the hooks script."""
    merged = dims.merge_server_dimensions(
        {"id": ["b"], "pool": ["default"], "os": ["Linux"]}, {"pool": ["ci"]}, "x.py"
    )
    assert merged == {"id": ["b"], "pool": ["ci"], "os": ["Linux"], "bot_config": ["x.py"]}


@pytest.mark.parametrize("bad", [["a"], {"k": "v"}, {"k": [1]}, {"": ["v"]}])
def test_invalid_dimensions_are_refused(bad: object) -> None:
    """Only a dict of non-empty keys to lists of strings is accepted."""
    with pytest.raises(ValueError, match="dimension"):
        dims.validate_dimensions(bad)


def test_default_dimensions_describe_this_machine() -> None:
    """id, pool, os, cpu, cores and python are always present, as lists of strings."""
    found = dims.default_dimensions("me")
    assert found["id"] == ["me"]
    assert found["pool"] == ["default"]
    assert found["cores"] == [str(os.cpu_count())]
    assert found["python"][0] == "3"
    assert len(found["python"]) == 3
    assert dims.validate_dimensions(found) == found


def test_default_state_has_the_keys_the_server_requires() -> None:
    """running_time and sleep_streak are mandatory; disks describes the bot dir."""
    state = dims.default_state(os.getcwd(), started_ts=0.0, sleep_streak=4)
    assert state["sleep_streak"] == 4
    assert state["running_time"] > 0
    assert state["pid"] == os.getpid()
    assert all({"free_mb", "size_mb"} <= set(d) for d in state["disks"].values())


def test_output_is_dropped_only_when_acknowledged() -> None:
    """peek twice without ack gives the same offset; ack moves the offset on."""
    out = stream.OutputStream()
    out.append(b"abcdef")
    assert out.peek(4) == (0, b"abcd")
    assert out.peek(4) == (0, b"abcd")
    out.ack(0, 4)
    out.append(b"gh")
    assert out.peek(100) == (4, b"efgh")
    with pytest.raises(ValueError, match="expected 4"):
        out.ack(0, 1)


def test_update_cadence() -> None:
    """A full chunk goes now, buffered output after 3 s, a heartbeat after 10 s."""
    assert stream.chunk_ready(250_000, 0.0, 0.0, 250_000, 3.0, 10.0)
    assert not stream.chunk_ready(10, 2.0, 0.0, 250_000, 3.0, 10.0)
    assert stream.chunk_ready(10, 3.0, 0.0, 250_000, 3.0, 10.0)
    assert not stream.chunk_ready(0, 9.0, 0.0, 250_000, 3.0, 10.0)
    assert stream.chunk_ready(0, 10.0, 0.0, 250_000, 3.0, 10.0)


def test_task_environment() -> None:
    """Manifest env overrides (empty removes), prefixes are prepended, SWARMING_* win."""
    env = manifest.task_environment(
        {"env": {"A": "1", "DROP": ""}, "env_prefixes": {"PATH": ["bin", "x/y"], "NEW": ["z"]}},
        {"PATH": "/usr/bin", "DROP": "x", "KEEP": "k"},
        "/run",
        {"SWARMING_TASK_ID": "t1"},
    )
    assert env == {
        "A": "1",
        "KEEP": "k",
        "NEW": "/run/z",
        "PATH": os.pathsep.join(["/run/bin", "/run/x/y", "/usr/bin"]),
        "SWARMING_TASK_ID": "t1",
    }


@pytest.mark.parametrize("path", ["../up", "/abs"])
def test_paths_may_not_leave_the_run_dir(path: str) -> None:
    """relative_cwd and env_prefixes entries must stay inside the run directory."""
    with pytest.raises(manifest.ManifestError, match="inside the run directory"):
        manifest.task_environment({"env_prefixes": {"PATH": [path]}}, {}, "/run", {})


def test_last_resort_timeout() -> None:
    """hard + 3*max(grace, 30) + max(io, 1200); none without a hard timeout."""
    assert taskrun.last_resort_timeout(
        {"hard_timeout": 60, "grace_period": 1, "io_timeout": 5}
    ) == (60 + 90 + 1200)
    assert taskrun.last_resort_timeout(
        {"hard_timeout": 10, "grace_period": 60, "io_timeout": 2000}
    ) == (10 + 180 + 2000)
    assert taskrun.last_resort_timeout({"hard_timeout": 0, "grace_period": 30}) is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"task_id": ""}, "no task_id"),
        ({"command": []}, "non-empty list of strings"),
        ({"command": ["ls", 1]}, "non-empty list of strings"),
        ({"hard_timeout": -1}, "hard_timeout must be a non-negative number"),
        ({"io_timeout": "5"}, "io_timeout must be a non-negative number"),
        ({"relative_cwd": "../x"}, "relative_cwd"),
    ],
)
def test_unrunnable_manifests_are_refused(fields: dict[str, object], problem: str) -> None:
    """parse names what is wrong with a manifest before anything runs."""
    value: dict[str, object] = {"task_id": "t1", "command": ["true"], **fields}
    with pytest.raises(manifest.ManifestError, match=problem):
        manifest.parse(value, "/run")


def test_manifest_defaults() -> None:
    """Missing timeouts mean none; a missing grace period is the stock 30 s."""
    spec = manifest.parse({"task_id": "t1", "command": ["true"], "relative_cwd": "a/b"}, "/run")
    assert (spec.hard_timeout, spec.io_timeout, spec.grace_period) == (0.0, 0.0, 30.0)
    assert spec.cwd == "/run/a/b"
