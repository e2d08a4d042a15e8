"""The committed generated protobuf code matches the .proto sources."""

from __future__ import annotations

import filecmp
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path: pathlib.Path) -> None:
    """Regenerating from protos/ gives byte-identical files to those committed."""
    env = dict(
        os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "genprotos.py"), "--out", str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "protos").rglob("*")
        if p.is_file() and ("_pb2" in p.name)
    )
    assert fresh == committed, "generated file set differs; run `make protos`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"generated code is stale, run `make protos`: {stale}"
