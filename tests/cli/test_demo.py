"""The quick start's first command: ``logferry demo`` ships samples once, then nothing new."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.conftest import run_cli


def test_demo_twice(tmp_path: Path) -> None:
    first = run_cli("demo", "--dir", str(tmp_path / "d"), "--objects", "5")
    assert first.returncode == 0, first.stderr
    assert "generated 10 sample flow-log objects" in first.stderr
    assert "shipped 10 objects" in first.stderr
    assert "ledger:" in first.stderr
    files = sorted((tmp_path / "d" / "out").rglob("*.jsonl"))
    assert len(files) == 10
    rows = [orjson.loads(x) for f in files for x in f.read_bytes().splitlines()]
    assert rows
    assert all(r["timestamp"].startswith("2026-11-01T1") for r in rows)
    kinds = {("vpcflowlogs" in str(f)) for f in files}
    assert kinds == {True, False}  # both IBM and AWS samples
    second = run_cli("demo", "--dir", str(tmp_path / "d"), "--objects", "5")
    assert second.returncode == 0
    assert "shipped 0 objects" in second.stderr
    assert "nothing new to ship" in second.stderr


def test_demo_output_mirrors_the_bucket_keys(tmp_path: Path) -> None:
    p = run_cli("demo", "--dir", str(tmp_path / "d"), "--objects", "2", "-q")
    assert p.returncode == 0, p.stderr
    bucket, out = tmp_path / "d" / "bucket", tmp_path / "d" / "out"
    keys = sorted(f.relative_to(bucket).as_posix() for f in bucket.rglob("*") if f.is_file())
    assert any("crn%3Av1" in k for k in keys)  # IBM keys hold a percent-encoded CRN
    written = sorted(f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file())
    assert written == [k + ".jsonl" for k in keys]  # not encoded a second time (crn%253Av1)
