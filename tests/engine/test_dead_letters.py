"""Streams lose nothing when a sink refuses a batch for good: dead letters, then drain.

The scenarios of issue 10, end to end through the CLI: a followed file shipped to an
InfluxDB database that does not exist yet (404), and to a Mezmo endpoint answering 400.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import orjson

from logferry.generate.api_requests import ApiRequestGenerator
from logferry.testing.mezmo_server import MezmoServer
from tests.conftest import run_cli
from tests.influx import InfluxServer, influxdb  # noqa: F401

LINES = 2000


def _requests_log(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "api_requests_2024.log"
    lines = ApiRequestGenerator(seed=10).lines(LINES, start=1_700_000_000, span=LINES)
    path.write_text("".join(lines))
    return path


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_tail_to_influxdb_before_the_database_exists_then_drain(
    tmp_path: Path,
    influxdb: InfluxServer,  # noqa: F811
) -> None:
    path = _requests_log(tmp_path)
    env = {"LOGFERRY_LEDGER": str(tmp_path / "ledger.db")}
    sink = f"influxdb+{influxdb.url}/nodb?measurement=requests"
    source = f"tail://{path.parent}/api_requests*.log"

    shipped = run_cli("ship", source, "--to", sink, "--json", "-q", env=env)
    assert shipped.returncode == 1, shipped.stderr
    summary = _json_lines(shipped.stdout)[-1]
    assert summary["dead_letters"] == LINES
    assert summary["failed"]
    assert "404" in summary["failed"][0]["error"]

    listed = _json_lines(run_cli("errors", "--json", env=env).stdout)
    assert listed
    assert all(str(e["id"]).startswith("D") for e in listed)
    assert sum(e["records"][1] - e["records"][0] for e in listed) == LINES

    again = run_cli("ship", source, "--to", sink, "--json", "-q", env=env)
    assert again.returncode == 0, again.stderr
    assert _json_lines(again.stdout)[-1]["lines"] == 0  # the cursor moved on; nothing lost

    influxdb.create_database("nodb")
    drained = run_cli("drain", "--to", sink, "--json", "-q", env=env)
    assert drained.returncode == 0, drained.stderr
    report = _json_lines(drained.stdout)[-1]
    assert report["lines"] == LINES
    assert report["failed"] == []
    rows = influxdb.query('SELECT count("duration") FROM requests', db="nodb")
    assert rows[0]["count"] == LINES
    # The api-request format was recognised on tail:// (auto): each point has its customer.
    customers = influxdb.query('SHOW TAG VALUES FROM requests WITH KEY = "customer_id"', "nodb")
    assert len(customers) > 1

    assert _json_lines(run_cli("errors", "--json", env=env).stdout) == []
    again = run_cli("drain", "--to", sink, "--json", "-q", env=env)
    assert again.returncode == 0
    assert influxdb.query('SELECT count("duration") FROM requests', db="nodb")[0]["count"] == LINES


def test_tail_to_mezmo_refusing_with_400_then_drain(tmp_path: Path, ingest_key: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(LINES)))
    env = {"LOGFERRY_LEDGER": str(tmp_path / "ledger.db"), "LOGDNA_INGESTION_KEY": ingest_key}
    with MezmoServer(ingest_key) as mezmo:
        mezmo.fail_next(10_000, 400)
        source = f"tail://{logs}/*.log"
        shipped = run_cli("ship", source, "--to", mezmo.url, "--json", "-q", env=env)
        assert shipped.returncode == 1, shipped.stderr
        assert _json_lines(shipped.stdout)[-1]["dead_letters"] == LINES
        assert mezmo.lines == []

        mezmo.clear()
        drained = run_cli("drain", "--to", mezmo.url, "--json", "-q", env=env)
        assert drained.returncode == 0, drained.stderr
        assert sorted(int(x["line"].split()[1]) for x in mezmo.lines) == list(range(LINES))
        # Each record keeps its own time through the dead-letter store.
        assert all(isinstance(x["timestamp"], int) for x in mezmo.lines)
        assert _json_lines(run_cli("errors", "--json", env=env).stdout) == []


def test_errors_purge_forgets_dead_letters(tmp_path: Path, ingest_key: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("one\ntwo\n")
    env = {"LOGFERRY_LEDGER": str(tmp_path / "ledger.db"), "LOGDNA_INGESTION_KEY": ingest_key}
    with MezmoServer(ingest_key) as mezmo:
        mezmo.fail_next(10, 400)
        run_cli("ship", f"tail://{logs}/*.log", "--to", mezmo.url, "-q", env=env)
    (letter,) = _json_lines(run_cli("errors", "--json", env=env).stdout)
    shown = run_cli("errors", "show", letter["id"], env=env)
    assert shown.returncode == 0
    assert orjson.loads(shown.stdout)["records"] == [0, 2]
    purged = run_cli("errors", "purge", "--yes", "--id", letter["id"], env=env)
    assert purged.returncode == 0, purged.stderr
    assert _json_lines(run_cli("errors", "--json", env=env).stdout) == []


def test_one_off_run_gives_up_on_an_unreachable_sink_in_time(
    tmp_path: Path, ingest_key: str
) -> None:
    """A sink on a closed port: the object waits for the next run after --retry-timeout,
    its failure is printed once, and the counts are right."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "one.log").write_text("x" * 749 + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"LOGFERRY_LEDGER": str(tmp_path / "ledger.db"), "LOGDNA_INGESTION_KEY": ingest_key}
    began = time.monotonic()
    p = run_cli(
        "ship", str(bucket), "--to", f"mezmo+http://127.0.0.1:{port}/logs/ingest",
        "--retry-timeout", "3", env=env,
    )  # fmt: skip
    took = time.monotonic() - began
    assert p.returncode == 1
    assert took < 20, f"took {took:.0f} s"
    assert p.stderr.count("failed one.log") == 1, p.stderr
    assert "shipped 0 objects" in p.stderr
    assert "1 failed" in p.stderr
    assert "2/3" not in p.stderr
