"""``logferry ledger prune``: old done rows go, and their objects are still not shipped again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import run_cli
from tests.helpers import age_object

DAY = 86400


def _put(s3: Any, bucket: str, name: str, n: int, age_days: float) -> None:
    """An object of ``n`` lines, last modified ``age_days`` ago."""
    s3.put_object(Bucket=bucket, Key=name, Body="".join(f"{name} line {i}\n" for i in range(n)))
    if age_days:
        age_object(bucket, name, age_days)


def _age_ledger(path: Path, days: float) -> None:
    """The ledger's rows as they would be ``days`` later: finished that long ago."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE objects SET done_at = done_at - ?, updated = updated - ?",
            (days * DAY, days * DAY),
        )


def _ship(source: str, endpoint: str, out: Path, ledger: Path) -> dict[str, object]:
    r = run_cli("ship", source, "--endpoint-url", endpoint, "--to", f"file://{out}",
                "--ledger", str(ledger), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return dict(orjson.loads(r.stdout.splitlines()[-1]))


def _shipped(out: Path) -> list[str]:
    return [
        orjson.loads(raw)["line"]
        for p in out.rglob("*.jsonl")
        for raw in p.read_bytes().splitlines()
    ]


def test_pruned_objects_are_not_shipped_again(
    s3: Any, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    out, ledger = tmp_path / "out", tmp_path / "ledger.db"
    for name in ("a.log", "b.log", "c.log"):
        _put(s3, bucket, name, 5, age_days=3)
    assert _ship(f"s3://{bucket}", s3_endpoint, out, ledger)["objects"] == 3
    _age_ledger(ledger, 2)
    pruned = run_cli("ledger", "prune", "--before", "1d", "--ledger", str(ledger), "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert orjson.loads(pruned.stdout)["pruned"] == 3
    _put(s3, bucket, "d.log", 5, age_days=0)  # arrives after the prune
    assert _ship(f"s3://{bucket}", s3_endpoint, out, ledger)["objects"] == 1
    again = run_cli("ship", f"s3://{bucket}", "--key", "a.log", "--endpoint-url", s3_endpoint,
                    "--to", f"file://{out}", "--ledger", str(ledger), "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "already shipped (pruned from the ledger)" in again.stderr
    lines = _shipped(out)
    assert sorted(lines) == sorted(f"{n}.log line {i}" for n in "abcd" for i in range(5))


def test_dry_run_prunes_nothing(s3: Any, bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    out, ledger = tmp_path / "out", tmp_path / "ledger.db"
    _put(s3, bucket, "a.log", 2, age_days=3)
    _ship(f"s3://{bucket}", s3_endpoint, out, ledger)
    _age_ledger(ledger, 2)
    r = run_cli("ledger", "prune", "--before", "1d", "--dry-run", "--ledger", str(ledger))
    assert r.returncode == 0, r.stderr
    assert "would prune 1 done objects" in r.stderr
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT count(*) FROM objects").fetchone() == (1,)


def test_a_local_directory_is_never_pruned(tmp_path: Path) -> None:
    """Its files can come back with old mtimes (cp -p, rsync -a): a watermark would skip them."""
    src, out, ledger = tmp_path / "src", tmp_path / "out", tmp_path / "ledger.db"
    src.mkdir()
    (src / "a.log").write_text("a\n")
    r = run_cli("ship", str(src), "--to", f"file://{out}", "--ledger", str(ledger))
    assert r.returncode == 0, r.stderr
    _age_ledger(ledger, 2)
    r = run_cli("ledger", "prune", "--before", "1d", "--ledger", str(ledger), "--json")
    assert r.returncode == 0, r.stderr
    assert orjson.loads(r.stdout)["pruned"] == 0
    assert orjson.loads(r.stdout)["kept"] == [src.as_uri()]
    r = run_cli("ledger", "prune", "--before", "1d", "--source", src.as_uri(), "--ledger",
                str(ledger))  # fmt: skip
    assert r.returncode == 2
    assert "cannot be pruned: a local directory" in r.stderr


def test_a_recent_before_is_refused(tmp_path: Path) -> None:
    r = run_cli("ledger", "prune", "--before", "10m", "--ledger", str(tmp_path / "l.db"))
    assert r.returncode == 2
    assert "less than an hour ago" in r.stderr
    r = run_cli("ledger", "prune", "--before", "2099-01-01", "--ledger", str(tmp_path / "l.db"))
    assert r.returncode == 2
    assert "'2099-01-01' is in the future" in r.stderr


def test_no_ledger_is_an_error_not_a_new_one(tmp_path: Path) -> None:
    r = run_cli("ledger", "prune", "--before", "90d", "--ledger", str(tmp_path / "none.db"))
    assert r.returncode == 2
    assert not (tmp_path / "none.db").exists()
