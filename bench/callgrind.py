"""Instructions counted over a stretch of a script, run under valgrind's callgrind.

The machine's speed moves by 10-20% between identical runs of the same
code (bench/README.md), which hides a change worth a few percent. The
instructions a stretch of code executes do not move: callgrind counts them
the same, run after run, whatever else the machine does. What they leave
out is the kernel's work (system calls, page faults), so they weigh a
change to Python or to SQLite's own work, not to how often either calls
the kernel (`strace -c` counts that).

A script offers `--instructions` in one of two ways. `reexec_under_callgrind`
runs the script itself again under valgrind (`--instr-atstart=no`, so
start-up is not counted), and in that run `counted()` switches counting on
for one stretch and reads its total from callgrind's dump. Or the script
starts a server process under valgrind (`wrap`), and `counted(pid, out)`
switches counting on in that process for one stretch of the script's own
(the server's instructions while the script's bots drain). Valgrind runs
Python about 50 times slower: use a few hundred tasks.
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
    command, out = wrap([sys.executable, *sys.argv])
    os.environ[OUT_ENV] = str(out)
    os.execv(command[0], command)


def wrap(command: list[str]) -> tuple[list[str], Path]:
    """`command` under callgrind, counting off at start, and the file callgrind writes.

    The command runs with PYTHONHASHSEED=0 (through env(1), which execs
    valgrind in its own process): the same dict and set orders run after
    run, so the same instructions.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    out = Path(tempfile.mkdtemp(prefix="drover-callgrind-")) / "callgrind.out"
    return [
        shutil.which("env") or "/usr/bin/env",
        "PYTHONHASHSEED=0",
        valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        "--log-file=/dev/null",
        *command,
    ], out


class Count:
    """The instructions of one stretch, known once it ends, and callgrind's dump of it.

    The dump stays (in a temporary directory) for `callgrind_annotate`.
    """

    instructions = 0
    dump: Path | None = None


@contextlib.contextmanager
def counted(pid: int | None = None, out: Path | None = None) -> Iterator[Count]:
    """Counts the instructions (all threads) of process `pid` during the `with` block.

    By default this process, the run under callgrind; else a process that
    `wrap` started, `out` being the file `wrap` named.
    """
    pid = os.getpid() if pid is None else pid
    out = Path(os.environ[OUT_ENV]) if out is None else out
    count = Count()
    _control("--zero", pid)
    _control("--instr=on", pid)
    try:
        yield count
    finally:
        _control("--dump=stretch", pid)
        _control("--instr=off", pid)
        count.dump = out.with_name(out.name + ".1")
        count.instructions = _totals(count.dump)


def _control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


def _totals(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")
