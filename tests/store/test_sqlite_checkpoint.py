"""The SQLite store's checkpoints: PASSIVE passes, and a RESTART once the WAL is long."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store import sqlite_checkpoint
from server.store.sqlite_checkpoint import Checkpointer
from server.store.sqlite_schema import BUSY_TIMEOUT_MS


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "wal.sqlite3"
    with contextlib.closing(_connect(path)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return path


@pytest.fixture
def writer(db_path: Path) -> Iterator[sqlite3.Connection]:
    """The store's connection: it writes and never checkpoints."""
    with contextlib.closing(_connect(db_path)) as db:
        yield db


@pytest.fixture
def checkpoints(db_path: Path) -> Iterator[sqlite3.Connection]:
    """The checkpointer thread's connection, with its busy timeout."""
    with contextlib.closing(_connect(db_path)) as db:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield db


@pytest.fixture
def pin(db_path: Path) -> Iterator[sqlite3.Connection]:
    """The checkpointer thread's second connection, which holds its pin."""
    with contextlib.closing(_connect(db_path)) as db:
        yield db


@pytest.fixture
def short_restart_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RESTART gives up on a reader after a millisecond."""
    monkeypatch.setattr(sqlite_checkpoint, "RESTART_WAIT_MS", 1)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    # The writer under test never checkpoints by itself.
    db.execute("PRAGMA wal_autocheckpoint = 0")
    return db


def _write(db: sqlite3.Connection, rows: int) -> None:
    for i in range(rows):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (v) VALUES (?)", (f"row {i} " + "x" * 3000,))
        db.execute("COMMIT")


def _wal_bytes(db_path: Path) -> int:
    """The WAL file's size, which a WAL started over does not change."""
    return Path(f"{db_path}-wal").stat().st_size


def _wal_pages(db: sqlite3.Connection) -> int:
    """Pages in the WAL, as a checkpoint that copies nothing new reports them."""
    pages: int = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    return pages


def test_a_short_wal_gets_a_passive_pass_only(
    db_path: Path, writer: sqlite3.Connection, checkpoints: sqlite3.Connection
) -> None:
    checkpointer = Checkpointer(db_path, restart_pages=1_000)
    _write(writer, 20)
    checkpointer.checkpoint(checkpoints)
    assert checkpointer.restarts == 0
    busy, pages, copied = checkpoints.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, copied) == (0, pages)  # all copied back by the pass
    assert pages >= 20
    # Without a pin, SQLite's own way: the next write starts the WAL over.
    _write(writer, 1)
    assert _wal_pages(checkpoints) < pages


def test_a_long_wal_is_restarted_and_the_next_write_starts_it_over(
    db_path: Path, writer: sqlite3.Connection, checkpoints: sqlite3.Connection
) -> None:
    checkpointer = Checkpointer(db_path, restart_pages=10)
    _write(writer, 40)
    before = _wal_pages(checkpoints)
    checkpointer.checkpoint(checkpoints)
    assert checkpointer.restarts == 1
    _write(writer, 1)
    assert _wal_pages(checkpoints) < before
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 41
    # The pass leaves the connection's busy timeout as it found it.
    assert checkpoints.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS


def test_a_reader_holding_the_wal_defers_the_restart_without_losing_writes(
    db_path: Path,
    writer: sqlite3.Connection,
    checkpoints: sqlite3.Connection,
    short_restart_wait: None,
) -> None:
    checkpointer = Checkpointer(db_path, restart_pages=10)
    _write(writer, 5)
    with contextlib.closing(_connect(db_path)) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 5
        _write(writer, 30)
        checkpointer.checkpoint(checkpoints)
        assert checkpointer.restarts == 0  # the reader's snapshot still needs the WAL
        assert checkpoints.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
        reader.execute("COMMIT")
    checkpointer.checkpoint(checkpoints)
    assert checkpointer.restarts == 1
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 35


def test_under_the_pin_writes_after_a_full_pass_append_to_the_wal(
    db_path: Path,
    writer: sqlite3.Connection,
    checkpoints: sqlite3.Connection,
    pin: sqlite3.Connection,
) -> None:
    checkpointer = Checkpointer(db_path, restart_pages=1_000)
    _write(writer, 20)
    size = _wal_bytes(db_path)
    checkpointer.checkpoint(checkpoints, pin)
    assert pin.in_transaction
    _write(writer, 1)
    # Appended: a WAL started over would have been written from its beginning.
    assert _wal_bytes(db_path) > size
    # The next pass copies all that came before it and renews the pin: still appending.
    size = _wal_bytes(db_path)
    checkpointer.checkpoint(checkpoints, pin)
    _write(writer, 1)
    assert _wal_bytes(db_path) > size
    busy, pages, copied = checkpoints.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    # The pin's snapshot bounds what a pass copies: the last write's pages wait for the next.
    assert busy == 0
    assert 0 < pages - copied < pages
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 22
    assert checkpointer.restarts == 0


def test_a_long_wal_under_the_pin_is_still_restarted(
    db_path: Path,
    writer: sqlite3.Connection,
    checkpoints: sqlite3.Connection,
    pin: sqlite3.Connection,
) -> None:
    checkpointer = Checkpointer(db_path, restart_pages=30)
    _write(writer, 5)
    checkpointer.checkpoint(checkpoints, pin)  # short: pinned
    _write(writer, 40)
    before = _wal_pages(checkpoints)
    checkpointer.checkpoint(checkpoints, pin)  # long: the pin is let go for the RESTART
    assert checkpointer.restarts == 1
    assert not pin.in_transaction
    _write(writer, 1)
    assert _wal_pages(checkpoints) < before
    checkpointer.checkpoint(checkpoints, pin)  # short again: pinned
    assert pin.in_transaction
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 46


def test_two_processes_pins_let_one_of_them_restart_a_long_wal(
    db_path: Path,
    writer: sqlite3.Connection,
    checkpoints: sqlite3.Connection,
    pin: sqlite3.Connection,
    short_restart_wait: None,
) -> None:
    """Two servers on one file (replicas), each with its checkpointer and its pin."""
    mine = Checkpointer(db_path, restart_pages=30)
    theirs = Checkpointer(db_path, restart_pages=30)
    with (
        contextlib.closing(_connect(db_path)) as their_db,
        contextlib.closing(_connect(db_path)) as their_pin,
    ):
        their_db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _write(writer, 5)
        theirs.checkpoint(their_db, their_pin)  # short: they pin
        _write(writer, 40)
        mine.checkpoint(checkpoints, pin)  # long, but their pin holds the WAL
        assert mine.restarts == 0
        theirs.checkpoint(their_db, their_pin)  # long: their RESTART finds no pin
        assert theirs.restarts == 1
        assert not their_pin.in_transaction
        assert not pin.in_transaction
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 45
