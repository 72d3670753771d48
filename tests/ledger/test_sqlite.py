"""SQLite-only ledger behaviour: file mode, WAL, URLs, migrations (semantics: test_contract.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from logferry.errors import ConfigError
from logferry.ledger import LedgerError, SQLiteLedger, open_ledger
from logferry.records import ObjectInfo

OBJ = ObjectInfo("logs/a.gz", 100, "etag-1", 1_700_000_000_000)


def test_file_is_private_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    led = SQLiteLedger(path)
    led.claim("s3://b", OBJ, "me", 60)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mode = led._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    led.close()


def test_open_ledger_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    led = open_ledger(f"sqlite:///{tmp_path}/a.db")
    assert Path(tmp_path / "a.db").exists()
    led.close()
    monkeypatch.setenv("LOGFERRY_LEDGER", str(tmp_path / "env.db"))
    open_ledger().close()
    assert (tmp_path / "env.db").exists()
    with pytest.raises(ConfigError, match="unknown ledger URL scheme"):
        open_ledger("mysql://x/y")
    with pytest.raises(ConfigError, match="bad ledger URL"):
        open_ledger("sqlite://relative.db")
    memory = open_ledger("sqlite:///:memory:")
    assert isinstance(memory, SQLiteLedger)
    memory.close()


def test_garbage_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    garbage = b"this is not sqlite" * 100
    bad.write_bytes(garbage)
    message = (
        f"{bad} is not a logferry ledger (not a SQLite database): move it away or pass --ledger"
    )
    for readonly in (False, True):
        with pytest.raises(ConfigError) as caught:
            SQLiteLedger(bad, readonly=readonly)
        assert str(caught.value) == message
    assert bad.read_bytes() == garbage  # left as it was


def test_someone_elses_database_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    for readonly in (False, True):
        with pytest.raises(ConfigError, match=r"SQLite database but not a logferry ledger.*users"):
            SQLiteLedger(other, readonly=readonly)
    with sqlite3.connect(other) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert tables == {"users"}


def test_create_false_never_makes_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    for readonly in (False, True):
        with pytest.raises(ConfigError) as caught:
            open_ledger(str(path), create=False, readonly=readonly)
        assert str(caught.value) == f"no ledger at {path}: ship something first, or pass --ledger"
        with pytest.raises(ConfigError, match="no ledger at"):
            open_ledger(f"sqlite:///{path}", create=False, readonly=readonly)
    assert not (tmp_path / "sub").exists()
    # an empty file (a ledger being created right now) is no ledger to read either
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(ConfigError, match="no ledger at"):
        open_ledger(str(empty), create=False, readonly=True)


def test_readonly_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    led = open_ledger(str(path))
    claim = led.claim("s3://b", OBJ, "me", 60)
    assert claim
    led.fail(claim, "boom", "DecodeError")
    led.close()
    ro = open_ledger(str(path), create=False, readonly=True)
    try:
        assert [r.failed for r in ro.status()] == [1]
        (entry,) = ro.entries()
        assert entry.last_error == "boom" and ro.entry(entry.id) == entry
        with pytest.raises(LedgerError, match="is read-only"):
            ro.purge_failed()
        with pytest.raises(LedgerError, match="is read-only"):
            ro.claim("s3://b", ObjectInfo("new", 1, "e", 0), "me", 60)
    finally:
        ro.close()
    assert len(open_ledger(str(path)).entries()) == 1


def test_readonly_refuses_an_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.close()
    with pytest.raises(ConfigError, match=r"older than this logferry.*ships upgrades it"):
        open_ledger(str(path), create=False, readonly=True)


def test_unwritable_ledger_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create ledger"):
        open_ledger(str(blocker / "ledger.db"))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    led = SQLiteLedger(tmp_path / "l.db")
    led._conn().execute("INSERT INTO schema_version VALUES (99)")
    led.close()
    with pytest.raises(ConfigError, match="upgrade logferry"):
        SQLiteLedger(tmp_path / "l.db")
    assert os.path.exists(tmp_path / "l.db")


def test_directory_named_as_ledger(tmp_path: Path) -> None:
    for readonly in (False, True):
        with pytest.raises(ConfigError, match="is a directory: name a file"):
            open_ledger(str(tmp_path), create=not readonly, readonly=readonly)
