"""Reading a task manifest (PROTOCOL.md 1.6): what to run, where, for how long.

The task runner calls `parse` before it reports anything: a manifest it
cannot run becomes a task_error with no task_update, which is how the stock
bot reports one too (PROTOCOL.md 0.2.6 M1). Paths from the manifest
(`relative_cwd`, `env_prefixes`) may not leave the task's run directory.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping

# The stock bot's default grace period between SIGTERM and SIGKILL.
DEFAULT_GRACE = 30.0


class ManifestError(Exception):
    """The manifest cannot be run as given."""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The parts of a manifest the task runner acts on."""

    task_id: str
    command: List[str]
    hard_timeout: float  # 0 = none
    io_timeout: float  # 0 = none
    grace_period: float
    run_dir: str
    cwd: str


def _number(manifest: Mapping[str, Any], key: str, default: float) -> float:
    value = manifest.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ManifestError(f"manifest {key} must be a non-negative number, not {value!r}")
    return float(value)


def inside(root: str, relative: str, what: str) -> str:
    """`root/relative`, refusing paths that leave `root`."""
    if os.path.isabs(relative) or os.path.normpath(relative).split(os.sep)[0] == "..":
        raise ManifestError(f"{what} {relative!r} must be a path inside the run directory")
    return os.path.normpath(os.path.join(root, relative))


def parse(manifest: Mapping[str, Any], run_dir: str) -> TaskSpec:
    """Checks the manifest; raises ManifestError saying what is wrong."""
    task_id = manifest.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ManifestError("manifest has no task_id")
    command = manifest.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise ManifestError(f"manifest command must be a non-empty list of strings: {command!r}")
    return TaskSpec(
        task_id=task_id,
        command=list(command),
        hard_timeout=_number(manifest, "hard_timeout", 0.0),
        io_timeout=_number(manifest, "io_timeout", 0.0),
        grace_period=_number(manifest, "grace_period", DEFAULT_GRACE),
        run_dir=run_dir,
        cwd=inside(run_dir, str(manifest.get("relative_cwd") or "."), "relative_cwd"),
    )


def task_environment(
    manifest: Mapping[str, Any], base: Mapping[str, str], run_dir: str, extra: Mapping[str, str]
) -> Dict[str, str]:
    """The command's environment: `base`, the manifest's `env` (an empty value
    removes the variable), `env_prefixes` prepended, then the SWARMING_* ones."""
    env = dict(base)
    for key, value in (manifest.get("env") or {}).items():
        if value:
            env[str(key)] = str(value)
        else:
            env.pop(str(key), None)
    for key, paths in (manifest.get("env_prefixes") or {}).items():
        prefix = [inside(run_dir, str(p), "env_prefixes path") for p in paths or []]
        if env.get(key):
            prefix.append(env[key])
        env[str(key)] = os.pathsep.join(prefix)
    env.update(extra)
    return env
