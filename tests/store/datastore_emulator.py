"""The Cloud Datastore emulator for the tests, on a free loopback port.

The emulator is the Java program of the Google Cloud CLI's
cloud-datastore-emulator component (Debian package
google-cloud-cli-datastore-emulator). It is started with java directly, the
way `gcloud beta emulators datastore start` does: in memory (--testing), in
Firestore in Datastore mode (what every Datastore database is today), and
with --require_indexes on server/store/index.yaml, so a query needing an
index that file lacks fails as it would on real Datastore.

A missing java or jar is an EmulatorUnavailable saying what to install:
the tests that need the emulator fail with it, they never skip. The
`datastore_emulator` fixture (registered for every test in
tests/conftest.py) starts one emulator per test session.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import unittest.mock
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import IO

import pytest

from server.clock import Clock
from server.store.datastore import DatastoreStore

ROOT = pathlib.Path(__file__).resolve().parents[2]
INDEX_FILE = ROOT / "server" / "store" / "index.yaml"
# Points at CloudDatastore.jar when the Cloud CLI lives somewhere unusual.
JAR_ENV = "DATASTORE_EMULATOR_JAR"
JAR_IN_SDK = pathlib.Path("platform", "cloud-datastore-emulator", "CloudDatastore.jar")
SDK_ROOTS = [
    pathlib.Path("/usr/lib/google-cloud-sdk"),
    pathlib.Path("/usr/share/google-cloud-sdk"),
    pathlib.Path("/opt/google-cloud-sdk"),
    pathlib.Path.home() / "google-cloud-sdk",
]
MAIN_CLASS = "com.google.cloud.datastore.emulator.CloudDatastore"
PROJECT = "drover-test"
# A cold JVM answers in 3-5 s; a loaded CI machine may take several times that.
START_TIMEOUT_SECS = 60.0
STOP_TIMEOUT_SECS = 10.0


class EmulatorUnavailable(Exception):
    """The Datastore emulator cannot run here."""


def find_jar() -> pathlib.Path:
    """Returns the emulator's jar: $DATASTORE_EMULATOR_JAR, or where the Cloud CLI puts it."""
    if configured := os.environ.get(JAR_ENV):
        jar = pathlib.Path(configured)
        if not jar.is_file():
            raise EmulatorUnavailable(f"${JAR_ENV} is {configured}, which is not a file")
        return jar
    roots = list(SDK_ROOTS)
    if gcloud := shutil.which("gcloud"):
        roots.insert(0, pathlib.Path(gcloud).resolve().parent.parent)
    for root in roots:
        if (root / JAR_IN_SDK).is_file():
            return root / JAR_IN_SDK
    raise EmulatorUnavailable(
        "the Cloud Datastore emulator is not installed: install the Debian package"
        " google-cloud-cli-datastore-emulator (or `gcloud components install"
        f" cloud-datastore-emulator`), or point ${JAR_ENV} at CloudDatastore.jar"
    )


def find_java() -> str:
    """Returns the java executable to run the emulator with."""
    java = shutil.which("java")
    if java is None:
        raise EmulatorUnavailable(
            "java is not on PATH: the Datastore emulator needs a Java 11+ runtime"
            " (Debian: default-jre-headless)"
        )
    return java


@dataclasses.dataclass
class Emulator:
    """A running emulator; `host` is what DATASTORE_EMULATOR_HOST would say."""

    process: subprocess.Popen[bytes]
    host: str
    log_path: pathlib.Path
    log: IO[bytes]
    project: str = PROJECT

    @classmethod
    def start(cls, log_path: pathlib.Path, *, attempts: int = 3) -> Emulator:
        """Starts an emulator and waits until it answers; raises EmulatorUnavailable."""
        java, jar = find_java(), find_jar()
        for attempt in range(1, attempts + 1):
            port = _free_port()
            log = log_path.open("wb")
            process = subprocess.Popen(
                [
                    java,
                    "-cp",
                    str(jar),
                    MAIN_CLASS,
                    "start",
                    "--host=127.0.0.1",
                    f"--port={port}",
                    "--testing",
                    "--firestore_in_datastore_mode",
                    "--require_indexes",
                    f"--index_file={INDEX_FILE}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so stop() ends the JVM and anything it started.
                start_new_session=True,
            )
            emulator = cls(process, f"127.0.0.1:{port}", log_path, log)
            if emulator._wait_ready():
                return emulator
            exited = process.poll() is not None
            emulator.stop()
            # An exit may mean another process took the port between probe and
            # bind: try another port. A hang will not get better.
            if not exited or attempt == attempts:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise EmulatorUnavailable(f"the emulator did not start; its log ends:\n{tail}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stops the emulator's process group and closes its log."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    async def open_store(self, namespace: str = "", clock: Clock | None = None) -> DatastoreStore:
        """Opens a DatastoreStore on the emulator, in `namespace` or else a fresh one.

        DATASTORE_EMULATOR_HOST is set only while the client is made (the
        client reads it then), so it does not leak into other tests.
        """
        namespace = namespace or new_namespace()
        with unittest.mock.patch.dict(os.environ, {"DATASTORE_EMULATOR_HOST": self.host}):
            return await DatastoreStore.open(self.project, namespace=namespace, clock=clock)

    def _wait_ready(self) -> bool:
        """Polls the emulator's health endpoint; False if it exited or never answered."""
        # Straight to loopback, whatever proxy the environment names.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with opener.open(f"http://{self.host}/", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False


@pytest.fixture(scope="session")
def datastore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The Datastore emulator, started on first use and stopped when the session ends.

    Without java or the emulator the tests using it fail, saying what to
    install: in CI they must run, never skip.
    """
    log_path = tmp_path_factory.mktemp("datastore-emulator") / "emulator.log"
    try:
        emulator = Emulator.start(log_path)
    except EmulatorUnavailable as e:
        pytest.fail(f"Datastore emulator unavailable: {e}", pytrace=False)
    yield emulator
    emulator.stop()


def new_namespace() -> str:
    """A namespace no other test uses: its stores start empty."""
    return f"t{uuid.uuid4().hex}"


def _free_port() -> int:
    """A loopback port free right now (the emulator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
