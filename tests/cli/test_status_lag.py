"""``status --json`` gives scripts the lag the ledger knows: time since the last shipment,
work in progress, and what waits in the error queue."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_status_json_has_lag_fields(tmp_path: Path, ingest_key: str) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "ok.log").write_text("one\ntwo\n")
    (bucket / "bad.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    ledger = str(tmp_path / "l.db")
    shipped = run_cli("ship", str(bucket), "--to", str(tmp_path / "out"), "--ledger", ledger)
    assert shipped.returncode == 1  # the broken object failed alone
    p = run_cli("status", "--json", "--ledger", ledger)
    assert p.returncode == 0, p.stderr
    (source,) = json.loads(p.stdout)["sources"]
    lag = source["lag"]
    assert 0 <= lag["seconds_since_last_shipped"] < 120
    assert lag["error_queue"] == 1
    assert lag["dead_letters"] == 0
    assert lag["in_progress"] == 0
