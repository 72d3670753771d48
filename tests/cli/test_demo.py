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
