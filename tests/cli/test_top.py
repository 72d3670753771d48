"""``logferry top`` against a real metrics endpoint, and when nothing listens."""

from __future__ import annotations

import socket

from logferry.engine.metrics import Metrics, MetricsServer
from tests.conftest import run_cli


def test_top_once_shows_pipelines_rates_lag_and_readiness() -> None:
    metrics = Metrics()
    metrics.records.labels("s3://bucket", "mezmo(https://x/logs/ingest)").inc(1234)
    metrics.bytes.labels("s3://bucket", "mezmo(https://x/logs/ingest)").inc(56789)
    metrics.failures.labels("s3://bucket", "DecodeError").inc(2)
    metrics.oldest_unshipped.labels("s3://bucket").set(42)
    metrics.health("mezmo(https://x/logs/ingest)", False, "HTTP 503 Service Unavailable")
    server = MetricsServer(0, metrics=metrics).start()
    try:
        p = run_cli("top", "--once", str(server.port), env={"COLUMNS": "200"})
    finally:
        server.close()
    assert p.returncode == 0, p.stderr
    out = " ".join(p.stderr.split())
    assert "s3://bucket" in out
    assert "1,234" in out
    assert "oldest 42 s" in out
    assert "NOT READY" in out
    assert "HTTP 503" in out


def test_top_says_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run_cli("top", "--once", f"127.0.0.1:{port}")
    assert p.returncode == 1
    assert "nothing answers" in p.stderr
    assert "--metrics-port" in p.stderr
    assert "Traceback" not in p.stderr


def test_top_refuses_a_bad_endpoint() -> None:
    p = run_cli("top", "--once", "ftp://host:1")
    assert p.returncode == 2
    assert "bad endpoint" in p.stderr
