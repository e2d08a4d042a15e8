"""Instructions counted over a stretch of a script, run under valgrind's callgrind.

The machine's speed moves by 10-20% between identical runs of the same
code (bench/README.md), which hides a change worth a few percent. The
instructions a stretch of code executes do not move: callgrind counts them
the same, run after run, whatever else the machine does. What they leave
out is the kernel's work (system calls, page faults), so they weigh a
change to Python or to SQLite's own work, not to how often either calls
the kernel (`strace -c` counts that).

A script offers `--instructions`: `reexec_under_callgrind` runs it again
under valgrind (`--instr-atstart=no`, so start-up is not counted), and in
that run `counted()` switches counting on for one stretch and reads its
total from callgrind's dump. Valgrind runs Python about 50 times slower:
use a few hundred tasks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Set in the run under valgrind: the callgrind output file it was given.
OUT_ENV = "DROVER_BENCH_CALLGRIND_OUT"


def active() -> bool:
    """Whether this process is the run under callgrind."""
    return OUT_ENV in os.environ


def reexec_under_callgrind() -> None:
    """Replaces this process with the same command under callgrind, counting off at start."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    out = Path(tempfile.mkdtemp(prefix="drover-callgrind-")) / "callgrind.out"
    os.environ[OUT_ENV] = str(out)
    # The same dict and set orders run after run, so the same instructions.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(
        valgrind,
        [
            valgrind,
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            "--log-file=/dev/null",
            sys.executable,
            *sys.argv,
        ],
    )


class Count:
    """The instructions of one stretch, known once it ends, and callgrind's dump of it.

    The dump stays (in a temporary directory) for `callgrind_annotate`.
    """

    instructions = 0
    dump: Path | None = None


@contextlib.contextmanager
def counted() -> Iterator[Count]:
    """Counts the instructions of the `with` block (all threads), in the run under callgrind."""
    count = Count()
    _control("--zero")
    _control("--instr=on")
    try:
        yield count
    finally:
        _control("--dump=stretch")
        _control("--instr=off")
        count.dump = Path(os.environ[OUT_ENV] + ".1")
        count.instructions = _totals(count.dump)


def _control(flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(os.getpid())], check=True, capture_output=True)


def _totals(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")
