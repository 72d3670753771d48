"""The error queue: ``errors`` lists failed objects, ``drain`` retries them, ``purge`` forgets."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def setup_queue(tmp_path: Path, mezmo) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    src = tmp_path / "bucket"
    src.mkdir()
    (src / "good.log").write_text("a\nb\nc\n")
    (src / "broken.log.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    led = f"sqlite:///{tmp_path}/l.db"
    mezmo.fail_next(2, 401)  # the sink refuses this run (say, a key being rotated)
    p = run_cli("ship", str(src), "--to", mezmo.url, "--ledger", led, "--max-attempts", "1")
    assert p.returncode == 1
    mezmo.clear()
    return src, led


def test_errors_list_show_drain_purge(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src, led = setup_queue(tmp_path, mezmo)
    p = run_cli("errors", "--ledger", led)
    lines = p.stdout.splitlines()
    assert len(lines) == 2
    assert p.returncode == 0
    assert any("broken.log.gz" in x and "DecodeError" in x for x in lines)
    assert any("good.log" in x and "401" in x for x in lines)
    rows = [json.loads(x) for x in run_cli("errors", "--ledger", led, "--json").stdout.splitlines()]
    ids = {r["key"]: r["id"] for r in rows}
    assert {r["attempts"] for r in rows} == {1}
    assert all(r["first_seen"].endswith("Z") for r in rows)
    shown = json.loads(run_cli("errors", "show", str(ids["good.log"]), "--ledger", led).stdout)
    assert shown["key"] == "good.log"
    assert shown["status"] == "failed"
    assert shown["size"] == 6
    assert run_cli("errors", "show", "9999", "--ledger", led).returncode == 2
    # catchup leaves objects that used their attempts alone, and exits 1 to say so
    p = run_cli("ship", str(src), "--to", mezmo.url, "--ledger", led, "--max-attempts", "1")
    assert p.returncode == 1
    assert "error queue" in p.stderr
    assert not mezmo.lines
    # drain: the outage is over, good.log ships; broken.log.gz is still broken and stays
    p = run_cli("drain", "--to", mezmo.url, "--ledger", led, "--json")
    assert p.returncode == 1
    summary = json.loads(p.stdout.splitlines()[-1])
    assert summary["drained"] == 1
    assert [f["key"] for f in summary["failed"]] == ["broken.log.gz"]
    assert [x["line"] for x in mezmo.lines] == ["a", "b", "c"]
    rows = [json.loads(x) for x in run_cli("errors", "--ledger", led, "--json").stdout.splitlines()]
    assert [(r["key"], r["attempts"]) for r in rows] == [("broken.log.gz", 2)]
    assert run_cli("drain", "--to", mezmo.url, "--ledger", led, "--id", "424242").returncode == 2
    # purge needs --yes, then forgets
    assert run_cli("errors", "purge", "--ledger", led).returncode == 2
    p = run_cli("errors", "purge", "--yes", "--ledger", led)
    assert p.returncode == 0
    assert "purged 1" in p.stderr
    assert run_cli("errors", "--ledger", led, "--json").stdout == ""


def test_drain_by_id_and_source(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src, led = setup_queue(tmp_path, mezmo)
    rows = [
        json.loads(x)
        for x in run_cli(
            "errors", "--ledger", led, "--json", "--source", str(src)
        ).stdout.splitlines()
    ]
    assert len(rows) == 2
    good = next(r["id"] for r in rows if r["key"] == "good.log")
    p = run_cli(
        "drain", "--to", mezmo.url, "--ledger", led, "--id", str(good), "--source", str(src)
    )
    assert p.returncode == 0, p.stderr
    assert len(mezmo.lines) == 3
    left = [
        json.loads(x)["key"]
        for x in run_cli("errors", "--ledger", led, "--json").stdout.splitlines()
    ]
    assert left == ["broken.log.gz"]
