"""SQLite-only ledger behaviour: file mode, WAL, URLs, migrations (semantics: test_contract.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from logferry.errors import ConfigError
from logferry.ledger import SQLiteLedger, open_ledger
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
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable ledger"):
        SQLiteLedger(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    led = SQLiteLedger(tmp_path / "l.db")
    led._conn().execute("INSERT INTO schema_version VALUES (99)")
    led.close()
    with pytest.raises(ConfigError, match="upgrade logferry"):
        SQLiteLedger(tmp_path / "l.db")
    assert os.path.exists(tmp_path / "l.db")
