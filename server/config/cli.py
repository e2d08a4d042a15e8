"""`drover config validate DIR`: checks a config directory the way the server would.

Admins run it before committing an edit (or in the config repo's presubmit);
it runs exactly the checks `LiveConfig` runs on reload, so a set that passes
here is adopted by a running server.
"""

from __future__ import annotations

import sys
from typing import TextIO

from server.config import loader


def validate_command(
    config_dir: str, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Prints "OK: revision <rev>" and returns 0, or prints every problem and returns 1."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    read = loader.read_config(config_dir)
    problems = loader.check(read)
    if problems:
        for problem in problems:
            print(problem, file=err)
        print(f"{config_dir}: {len(problems)} problem(s), config refused", file=err)
        return 1
    print(f"OK: revision {read.revision}", file=out)
    return 0
