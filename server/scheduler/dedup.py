"""Dedup of idempotent tasks (PROTOCOL.md 4.4 step 2, DESIGN.md 6).

A slice marked `idempotent` promises that running the same properties again
gives the same result, so a new task whose idempotent slice has the same
properties as a recent successful run is completed at once with that run's
result instead of running. Three pure steps and one lookup, each one call
where it is wired in:

- at a successful completion, `reusable_hash` says what to store in the
  result's `properties_hash` (Store.find_reusable indexes it);
- at creation, `find_dedup` looks for a source, slice by slice;
- `deduped_result` turns the new task's result into a copy of the source's.

The hash is computed on the request as stored (validated and normalized by
server.scheduler.requests), and is persisted: any change to `canonical_form`
makes every stored hash unmatchable, which is harmless (the next run of each
task is simply not deduped, then becomes the new source) but must be a
conscious choice, so it comes with a new HASH_VERSION.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from server.model import TaskProperties, TaskRequest, TaskResult, TaskState
from server.store.base import Store

# Part of every hashed document: bump it when canonical_form changes, so old
# and new hashes can never be confused.
HASH_VERSION = 1


def canonical_form(props: TaskProperties) -> dict[str, Any]:
    """The properties that decide a run's result, in an order-independent form.

    Everything that reaches the bot is in, the secret included (as its
    SHA-256, so the encoding never holds the secret itself). The `idempotent`
    flag is out: only idempotent runs are ever stored as sources and looked
    up, so it would add nothing. Sets are sorted (dimensions, OR operands,
    env, caches, outputs); lists whose order matters keep it (command,
    env_prefixes paths).
    """
    dimensions = sorted((k, "|".join(sorted(v.split("|")))) for k, v in props.dimensions)
    return {
        "v": HASH_VERSION,
        "command": list(props.command),
        "dimensions": [list(pair) for pair in dimensions],
        "env": dict(sorted(props.env.items())),
        "env_prefixes": {k: list(v) for k, v in sorted(props.env_prefixes.items())},
        "relative_cwd": props.relative_cwd,
        "execution_timeout_secs": props.execution_timeout_secs,
        "io_timeout_secs": props.io_timeout_secs,
        "grace_period_secs": props.grace_period_secs,
        "caches": sorted([c.name, c.path] for c in props.caches),
        "outputs": sorted(props.outputs),
        "secret_sha256": hashlib.sha256(props.secret_bytes).hexdigest(),
    }


def properties_hash(props: TaskProperties) -> str:
    """SHA-256 (hex) of the canonical JSON of `props`; equal iff the runs are interchangeable.

    Stable across processes, platforms and Python versions: JSON with sorted
    keys, no whitespace and ASCII escapes only.
    """
    text = json.dumps(
        canonical_form(props), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def reusable_hash(request: TaskRequest, result: TaskResult) -> str:
    """The `properties_hash` to store with a finished result, or "" if it is no source.

    A result is a dedup source when it ran its current slice to a successful
    COMPLETED (exit code 0), that slice is idempotent, and it is not itself
    a deduped copy.
    """
    is_success = (
        result.state is TaskState.COMPLETED
        and not result.failure
        and not result.internal_failure
        and result.exit_code == 0
    )
    if not is_success or result.deduped_from or request.is_termination:
        return ""
    if not 0 <= result.current_slice < len(request.slices):
        return ""
    props = request.slices[result.current_slice].properties
    return properties_hash(props) if props.idempotent else ""


async def find_dedup(
    store: Store, request: TaskRequest, now: float, window_secs: float
) -> tuple[int, TaskResult] | None:
    """Finds a result a new task may reuse: (slice index, source result), or None.

    Slices are tried in order; only idempotent ones are looked up, against
    sources that completed within the last `window_secs` (the setting
    `reusable_task_age_secs`).
    """
    if request.is_termination:
        return None
    for index, task_slice in enumerate(request.slices):
        if not task_slice.properties.idempotent:
            continue
        source = await store.find_reusable(
            properties_hash(task_slice.properties), now - window_secs
        )
        if source is not None:
            return index, source
    return None


def deduped_result(new: TaskResult, source: TaskResult, now: float, slice_index: int) -> TaskResult:
    """The new task's result, COMPLETED at `now` with the source's result.

    `new` is the result as creation built it. The exit code and duration are
    copied; the task never ran, so it keeps no try (try_number 0), no bot,
    no start time and no cost, and it is not queued. Its output is the
    source's, read through `deduped_from` (a result holds no output size of
    its own to copy). It carries no `properties_hash`: a copy is never
    itself a source.
    """
    return dataclasses.replace(
        new,
        state=TaskState.COMPLETED,
        modified_ts=now,
        completed_ts=now,
        current_slice=slice_index,
        queue_key="",
        expiration_ts=0.0,
        try_number=0,
        deduped_from=source.task_id,
        exit_code=source.exit_code,
        duration=source.duration,
        failure=False,
        internal_failure=False,
        cost_usd=0.0,
        properties_hash="",
    )
