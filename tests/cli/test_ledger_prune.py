"""``logferry ledger prune``: old done rows go, and their objects are still not shipped again."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import orjson

from tests.conftest import run_cli

DAY = 86400


def _write(src: Path, name: str, n: int, age_days: float) -> None:
    path = src / name
    path.write_text("".join(f"{name} line {i}\n" for i in range(n)))
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))


def _age_ledger(path: Path, days: float) -> None:
    """The ledger's rows as they would be ``days`` later: finished that long ago."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE objects SET done_at = done_at - ?, updated = updated - ?",
            (days * DAY, days * DAY),
        )


def _ship(src: Path, out: Path, ledger: Path) -> dict[str, object]:
    r = run_cli("ship", str(src), "--to", f"file://{out}", "--ledger", str(ledger), "--json")
    assert r.returncode == 0, r.stderr
    return dict(orjson.loads(r.stdout.splitlines()[-1]))


def _shipped(out: Path) -> list[str]:
    return [
        orjson.loads(raw)["line"]
        for p in out.rglob("*.jsonl")
        for raw in p.read_bytes().splitlines()
    ]


def test_pruned_objects_are_not_shipped_again(tmp_path: Path) -> None:
    src, out, ledger = tmp_path / "src", tmp_path / "out", tmp_path / "ledger.db"
    src.mkdir()
    for name in ("a.log", "b.log", "c.log"):
        _write(src, name, 5, age_days=3)
    assert _ship(src, out, ledger)["objects"] == 3
    _age_ledger(ledger, 2)
    pruned = run_cli("ledger", "prune", "--before", "1d", "--ledger", str(ledger), "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert orjson.loads(pruned.stdout)["pruned"] == 3
    _write(src, "d.log", 5, age_days=0)  # arrives after the prune
    assert _ship(src, out, ledger)["objects"] == 1
    lines = _shipped(out)
    assert sorted(lines) == sorted(f"{n}.log line {i}" for n in "abcd" for i in range(5))


def test_dry_run_prunes_nothing(tmp_path: Path) -> None:
    src, out, ledger = tmp_path / "src", tmp_path / "out", tmp_path / "ledger.db"
    src.mkdir()
    _write(src, "a.log", 2, age_days=3)
    _ship(src, out, ledger)
    _age_ledger(ledger, 2)
    r = run_cli("ledger", "prune", "--before", "1d", "--dry-run", "--ledger", str(ledger))
    assert r.returncode == 0, r.stderr
    assert "would prune 1 done objects" in r.stderr
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT count(*) FROM objects").fetchone() == (1,)


def test_a_recent_before_is_refused(tmp_path: Path) -> None:
    r = run_cli("ledger", "prune", "--before", "10m", "--ledger", str(tmp_path / "l.db"))
    assert r.returncode == 2
    assert "less than an hour ago" in r.stderr


def test_no_ledger_is_an_error_not_a_new_one(tmp_path: Path) -> None:
    r = run_cli("ledger", "prune", "--before", "90d", "--ledger", str(tmp_path / "none.db"))
    assert r.returncode == 2
    assert not (tmp_path / "none.db").exists()
