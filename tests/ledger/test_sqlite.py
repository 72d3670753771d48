"""The SQLite ledger: claims, checkpoints, statuses, migrations, file mode."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from logferry.errors import ConfigError
from logferry.ledger import SQLiteLedger, Status, open_ledger
from logferry.ledger.base import ClaimLostError
from logferry.records import ObjectInfo

OBJ = ObjectInfo("logs/a.gz", 100, "etag-1", 1_700_000_000_000)


@pytest.fixture()
def ledger(tmp_path: Path) -> SQLiteLedger:
    led = SQLiteLedger(tmp_path / "ledger.db")
    yield led
    led.close()


def test_file_is_private_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    led = SQLiteLedger(path)
    led.claim("s3://b", OBJ, "me", 60)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mode = led._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    led.close()


def test_claim_checkpoint_complete(ledger: SQLiteLedger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim is not None and claim.position == 0 and claim.attempts == 1
    ledger.checkpoint(claim, 500, 4000, 60)
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry and entry.status == Status.ACTIVE and entry.position == 500 and entry.bytes == 4000
    ledger.complete(claim)
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry and entry.status == Status.DONE and entry.lines == 500
    # done objects are not claimed again, unless forced (a deliberate re-send) from 0
    assert ledger.claim("s3://b", OBJ, "me", 60) is None
    again = ledger.claim("s3://b", OBJ, "me", 60, force=True)
    assert again is not None and again.position == 0


def test_new_etag_is_a_new_object(ledger: SQLiteLedger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim
    ledger.complete(claim)
    newer = ObjectInfo(OBJ.key, 200, "etag-2", OBJ.last_modified_ms + 1)
    assert ledger.claim("s3://b", newer, "me", 60) is not None
    seen = ledger.lookup("s3://b", [OBJ.key])[OBJ.key]
    assert (seen.etag, seen.status, seen.attempts) == ("etag-2", Status.ACTIVE, 1)


def test_live_claim_blocks_others_until_lease_expires(ledger: SQLiteLedger) -> None:
    first = ledger.claim("s3://b", OBJ, "host-x:1:a", 60)
    assert first is not None
    assert ledger.claim("s3://b", OBJ, "host-x:2:b", 60) is None
    # an expired lease can be taken over, and resumes at the checkpoint
    ledger.checkpoint(first, 7, 10, -1)
    taken = ledger.claim("s3://b", OBJ, "host-x:2:b", 60)
    assert taken is not None and taken.position == 7
    with pytest.raises(ClaimLostError):
        ledger.checkpoint(first, 9, 10, 60)


def test_dead_process_claim_is_taken_at_once(ledger: SQLiteLedger) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    import socket

    dead_owner = f"{socket.gethostname()}:{proc.pid}:dead"
    assert ledger.claim("s3://b", OBJ, dead_owner, 3600) is not None
    assert ledger.claim("s3://b", OBJ, "me", 60) is not None


def test_fail_keeps_position_and_release(ledger: SQLiteLedger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim
    ledger.checkpoint(claim, 3, 30, 60)
    ledger.fail(claim, "boom\nsecond line")
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert (
        entry
        and entry.status == Status.FAILED
        and entry.last_error == "boom"
        and entry.position == 3
    )
    retry = ledger.claim("s3://b", OBJ, "me", 60)
    assert retry and retry.position == 3 and retry.attempts == 2
    ledger.release(retry)
    assert ledger.get("s3://b", OBJ.key, OBJ.etag).status == Status.PENDING  # type: ignore[union-attr]


def test_status_aggregates(ledger: SQLiteLedger) -> None:
    for i in range(3):
        c = ledger.claim("s3://b", ObjectInfo(f"k{i}", 1, "e", 0), "me", 60)
        assert c
        ledger.checkpoint(c, 10, 100, 60)
        if i < 2:
            ledger.complete(c)
        else:
            ledger.fail(c, "bad")
    (row,) = ledger.status()
    assert (row.source, row.done, row.failed, row.in_progress, row.lines, row.bytes) == (
        "s3://b",
        2,
        1,
        0,
        30,
        300,
    )
    assert row.last_shipped is not None
    assert [e.key for e in ledger.entries(status=Status.FAILED)] == ["k2"]


def test_concurrent_claims_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    winners: list[str] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        led = SQLiteLedger(path)
        for i in range(50):
            if led.claim("s3://b", ObjectInfo(f"k{i}", 1, "e", 0), name, 60):
                with lock:
                    winners.append(f"k{i}")
        led.close()

    threads = [threading.Thread(target=grab, args=(f"h:{n}:x",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(winners) == sorted(f"k{i}" for i in range(50))


def test_open_ledger_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    led = open_ledger(f"sqlite:///{tmp_path}/a.db")
    assert Path(tmp_path / "a.db").exists()
    led.close()
    monkeypatch.setenv("LOGFERRY_LEDGER", str(tmp_path / "env.db"))
    open_ledger().close()
    assert (tmp_path / "env.db").exists()
    with pytest.raises(ConfigError, match="unknown ledger URL scheme"):
        open_ledger("mysql://x/y")
    with pytest.raises(ConfigError, match="PostgreSQL"):
        open_ledger("postgresql://u@h/db")


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
