"""Shipping to a Mezmo-compatible ingest server on loopback, through the runner and the CLI."""

from __future__ import annotations

import gzip
import socket
import sqlite3
import time
from pathlib import Path

import orjson

from logferry.ledger import SQLiteLedger, Status
from tests.conftest import put_fixtures, run_cli
from tests.shipping import ship


def test_flow_logs_reach_mezmo_with_event_timestamps(
    s3, bucket, s3_endpoint, mezmo, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    keys = put_fixtures(s3, bucket)
    r = ship(
        f"cos://{bucket}",
        to=mezmo.url,
        ledger=str(tmp_path / "l.db"),
        endpoint_url=s3_endpoint,
        app="flowlogs",
        tags="vpc,prod",
        hostname="shipper-1",
    )
    assert r.ok
    assert r.lines == 2
    lines = sorted(mezmo.lines, key=lambda x: x["timestamp"])
    assert [x["timestamp"] for x in lines] == [1591278159000, 1591278190000]
    assert {x["app"] for x in lines} == {"flowlogs"}
    assert {orjson.loads(x["line"])["key"] for x in lines} == {keys["911"]}
    (req,) = mezmo.requests
    assert req.params["hostname"] == "shipper-1"
    assert req.params["tags"] == "vpc,prod"
    assert abs(int(req.params["now"]) / 1000 - __import__("time").time()) < 60
    assert req.headers.get("content-encoding") == "gzip"


def test_default_hostname_and_retries(s3, bucket, s3_endpoint, mezmo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    body = b"\n".join(orjson.dumps({"ts": 1700000000 + i, "msg": f"m{i}"}) for i in range(100))
    s3.put_object(Bucket=bucket, Key="app.ndjson.gz", Body=gzip.compress(body))
    mezmo.fail_next(1, 429, retry_after=0)
    mezmo.fail_next(1, 503)
    mezmo.fail_next(1, "reset")
    r = ship(
        f"s3://{bucket}", to=mezmo.url, ledger=str(tmp_path / "l.db"), endpoint_url=s3_endpoint
    )
    assert r.ok, r.failed
    assert r.lines == 100, r.failed
    assert sorted(x["timestamp"] for x in mezmo.lines) == [
        (1700000000 + i) * 1000 for i in range(100)
    ]
    assert mezmo.requests[-1].params["hostname"] == socket.gethostname()
    assert r.counters.get("retries", 0) >= 3


def test_rejected_key_fails_the_object_and_every_sink_must_ack(
    s3, bucket, s3_endpoint, mezmo, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="a.log", Body=b"one\ntwo\n")
    out = tmp_path / "out"
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "LOGDNA_INGESTION_KEY": "wrong-key-s3cr3t-value"}
    led = tmp_path / "l.db"
    p = run_cli(
        "ship",
        f"s3://{bucket}",
        "--to",
        str(out),
        "--to",
        mezmo.url,
        "--ledger",
        str(led),
        "--json",
        env=env,
    )
    assert p.returncode == 1
    summary = orjson.loads(p.stdout.splitlines()[-1])
    assert "401" in summary["failed"][0]["error"]
    # the file sink took the batch, but the object is not done: no final file, ledger failed
    assert not (out / "a.log.jsonl").exists()
    ledger = SQLiteLedger(led)
    (entry,) = ledger.entries()
    ledger.close()
    assert entry.status == Status.FAILED
    assert entry.position == 0
    # the secret appears nowhere: output, errors, ledger file
    for text in (p.stdout, p.stderr, led.read_bytes().decode("latin-1")):
        assert "s3cr3t" not in text
    # with the right key (from the environment), the rerun ships it and both sinks have it
    p = run_cli(
        "ship",
        f"s3://{bucket}",
        "--to",
        str(out),
        "--to",
        mezmo.url,
        "--ledger",
        str(led),
        env={"AWS_ENDPOINT_URL": s3_endpoint},
    )
    assert p.returncode == 0, p.stderr
    assert [x["line"] for x in mezmo.lines] == ["one", "two"]
    assert (out / "a.log.jsonl").exists()


def test_missing_key_is_a_usage_error(
    s3, bucket, s3_endpoint, mezmo, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("LOGDNA_INGESTION_KEY")
    monkeypatch.delenv("MEZMO_INGESTION_KEY", raising=False)
    p = run_cli(
        "ship",
        f"s3://{bucket}",
        "--to",
        mezmo.url,
        "--ledger",
        str(tmp_path / "l.db"),
        env={"AWS_ENDPOINT_URL": s3_endpoint},
    )
    assert p.returncode == 2
    assert "LOGDNA_INGESTION_KEY" in p.stderr
    assert "Traceback" not in p.stderr


def test_long_lines_are_truncated_not_dropped(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "bucket"
    src.mkdir()
    (src / "big.log").write_text("short\n" + "x" * 100_000 + "\nafter\n")
    p = run_cli(
        "ship",
        str(src),
        "--to",
        mezmo.url,
        "--ledger",
        str(tmp_path / "l.db"),
        "--max-line-bytes",
        "1024",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    lines = [x["line"] for x in mezmo.lines]
    assert lines[0] == "short"
    assert lines[2] == "after"
    assert len(lines[1].encode()) <= 1024
    assert "truncated" in lines[1]
    assert orjson.loads(p.stdout.splitlines()[-1])["counters"]["truncated"] == 1


def test_sink_outage_never_advances_the_ledger(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "bucket"
    src.mkdir()
    (src / "a.log").write_text("".join(f"line {i}\n" for i in range(50)))
    mezmo.fail_next(10_000, 500)
    led = str(tmp_path / "l.db")
    # An outage is transient: the deliverer retries for --retry-timeout, then the object
    # waits for the next run, with one attempt used per run.
    began = time.monotonic()
    r = ship(str(src), to=mezmo.url, ledger=led, max_attempts=2, retry_timeout=1.0)
    assert time.monotonic() - began < 10
    assert not r.ok
    assert "500" in r.failed[0].error
    assert mezmo.statuses()[500] >= 2
    assert not mezmo.lines
    r = ship(str(src), to=mezmo.url, ledger=led, max_attempts=2, retry_timeout=0.3)
    assert len(r.failed) == 1
    with sqlite3.connect(tmp_path / "l.db") as conn:
        row = conn.execute("SELECT position, status, attempts, error_class FROM objects").fetchone()
    assert row == (0, "failed", 2, "RetryableSinkError")
    # with every attempt used, catchup leaves it in the error queue (and says so)
    mezmo.clear()
    r = ship(str(src), to=mezmo.url, ledger=led, max_attempts=2)
    assert (r.objects, r.held, r.ok) == (0, 1, False)
    assert not mezmo.lines
    r = ship(str(src), to=mezmo.url, ledger=led)
    assert r.ok
    assert len(mezmo.lines) == 50
