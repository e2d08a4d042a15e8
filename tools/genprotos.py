"""Regenerates the committed *_pb2.py / .pyi / _pb2_grpc.py files next to protos/**/*.proto.

Run through `make protos`. With `--check DIR`, writes into DIR instead, so the
drift test can compare a fresh generation with the committed files.
"""

from __future__ import annotations

import argparse
import pathlib

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent


def proto_sources() -> list[str]:
    """Returns the .proto files, relative to the repository root, sorted."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos").rglob("*.proto"))


def include_dirs() -> list[str]:
    """Returns protoc include paths: the repository, googleapis and the well-known types."""
    from google.api import annotations_pb2  # googleapis-common-protos ships the sources

    googleapis = pathlib.Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(ROOT), str(googleapis), str(well_known)]


def generate(out_dir: pathlib.Path) -> None:
    """Runs protoc with the Python, mypy and gRPC plugins into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc"]
    args += [f"-I{d}" for d in include_dirs()]
    args += [
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
    ]
    args += proto_sources()
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT)
    ns = parser.parse_args()
    generate(ns.out)


if __name__ == "__main__":
    main()
