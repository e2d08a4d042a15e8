"""Every bot module imports from an archive with only the standard library."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from bot import cli
from tests.bot import botzip
from tests.bot.conftest import PY39

INTERPRETERS = [
    pytest.param(sys.executable, id="current"),
    pytest.param(
        str(PY39),
        id="python3.9",
        marks=pytest.mark.skipif(not PY39.exists(), reason="no Python 3.9 interpreter here"),
    ),
]


def test_every_module_is_listed_for_is_fine() -> None:
    """is_fine imports the full module list, so a new module cannot be forgotten."""
    on_disk = {p.stem for p in botzip.BOT_DIR.glob("*.py")} - {"__init__", "__main__"}
    assert set(cli.MODULES) == on_disk


@pytest.mark.parametrize("python", INTERPRETERS)
def test_modules_import_in_isolated_interpreter(python: str, tmp_path: pathlib.Path) -> None:
    """`python -I -S` (no site-packages, no user paths) imports all of bot/ from the zip."""
    zip_path = tmp_path / "swarming_bot.zip"
    botzip.build(zip_path, "http://127.0.0.1:1")
    imports = ", ".join(f"bot.{name}" for name in cli.MODULES)
    code = (
        f"import sys; sys.path.insert(0, {str(zip_path)!r}); import {imports}; "
        "assert all(m.__file__.startswith(sys.path[0]) for n, m in sys.modules.items() "
        "if n.startswith('bot')); print('ok')"
    )
    result = subprocess.run(
        [python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
