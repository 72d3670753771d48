"""Metrics and health of a real run: counters equal what the sink has, lag falls to zero,
and ``/readyz`` fails while a sink is down and recovers when it is back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from logferry.config import ShipOptions
from logferry.engine import Router, StreamRunner
from logferry.engine.metrics import MetricsServer
from logferry.ledger import SQLiteLedger
from logferry.sinks.mezmo import MezmoSink
from logferry.sources.tail import TailSource
from logferry.testing.mezmo_server import MezmoServer
from tests.conftest import run_cli
from tests.helpers import free_port, wait_for


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) → value."""
    text = httpx.get(f"{url}/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_metrics_and_readiness_during_a_followed_run(tmp_path: Path, ingest_key: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("".join(f"line {i}\n" for i in range(300)))
    ledger = SQLiteLedger(tmp_path / "l.db")
    with MezmoServer(ingest_key) as mezmo:
        mezmo.fail_next(5, 503)
        sink = MezmoSink(mezmo.url, ingestion_key=ingest_key, hostname="h")
        source = TailSource(f"{logs}/*.log")
        options = ShipOptions(follow=True, batch_wait=0.05, retry_backoff=0.05)
        stop = threading.Event()
        runner = StreamRunner(source, Router.to_all([sink]), ledger, options, stop=stop,
                              discover_interval=0.1)  # fmt: skip
        server = MetricsServer(0, ready=lambda: {}).start()
        url = f"http://127.0.0.1:{server.port}"
        thread = threading.Thread(target=runner.run)
        thread.start()
        try:
            assert httpx.get(f"{url}/healthz").status_code == 200
            # The sink answers 503: not ready, and it says which sink and why.
            down = wait_for(
                lambda: sink.name in (r := httpx.get(f"{url}/readyz")).json()["problems"] and r
            )
            assert down.status_code == 503
            assert "503" in down.json()["problems"][sink.name]
            wait_for(lambda: len(mezmo.lines) == 300, message="every line at the sink")
            wait_for(lambda: sink.name not in httpx.get(f"{url}/readyz").json()["problems"])
            samples = scrape(url)
            assert value(samples, "logferry_records_total", sink=sink.name) == len(mezmo.lines)
            assert value(samples, "logferry_retries_total", sink=sink.name) >= 1
            assert value(samples, "logferry_claims_held", source=source.id) == 1
            assert value(samples, "logferry_bytes_behind", source=source.id) == 0
            with app.open("a") as f:
                f.write("one more\n")
            wait_for(lambda: len(mezmo.lines) == 301)
            samples = wait_for(
                lambda: (
                    value(s := scrape(url), "logferry_records_total", sink=sink.name) == 301 and s
                )
            )
            assert value(samples, "logferry_bytes_total", sink=sink.name) == sum(
                len(x["line"]) for x in mezmo.lines
            )
            assert value(samples, "logferry_batch_delivery_seconds_count", sink=sink.name) >= 2
        finally:
            stop.set()
            thread.join()
            server.close()
            sink.close()
    ledger.close()


def test_readiness_reports_an_unwritable_ledger(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    ledger.close()
    readonly = SQLiteLedger(tmp_path / "l.db", readonly=True)

    def ready() -> dict[str, str]:
        try:
            readonly.check_writable()
        except Exception as exc:
            return {"ledger": str(exc)}
        return {}

    server = MetricsServer(0, ready=ready).start()
    try:
        r = httpx.get(f"http://127.0.0.1:{server.port}/readyz")
        assert r.status_code == 503
        assert "read-only" in r.json()["problems"]["ledger"]
        assert httpx.get(f"http://127.0.0.1:{server.port}/nope").status_code == 404
    finally:
        server.close()
        readonly.close()


def test_ship_follow_serves_metrics_until_stopped(tmp_path: Path, ingest_key: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(100)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOGFERRY_LEDGER": str(tmp_path / "l.db")}
    with MezmoServer(ingest_key) as mezmo:
        proc = subprocess.Popen(
            [sys.executable, "-m", "logferry", "ship", f"tail://{logs}/*.log", "--to", mezmo.url,
             "--follow", "--batch-wait", "0.05", "--metrics-port", str(port), "-q"],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: len(mezmo.lines) == 100, timeout=30)
            samples = wait_for(lambda: _try_scrape(url), timeout=10)
            assert value(samples, "logferry_records_total") == 100
            assert value(samples, "logferry_error_queue_entries") == 0
            assert httpx.get(f"{url}/readyz").status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr


def _try_scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    try:
        return scrape(url)
    except httpx.HTTPError:
        return None


def test_metrics_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "b").mkdir()
        p = run_cli("ship", str(tmp_path / "b"), "--to", str(tmp_path / "o"),
                    "--metrics-port", str(port), env={"LOGFERRY_LEDGER": str(tmp_path / "l.db")})  # fmt: skip
    assert p.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in p.stderr


def test_run_daemon_serves_metrics(tmp_path: Path) -> None:
    bucket, out = tmp_path / "bucket", tmp_path / "out"
    bucket.mkdir()
    (bucket / "a.log").write_text("one\ntwo\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\ninterval: 0.2\n"
        f"sinks: {{out: {{url: 'file://{out}'}}}}\n"
        f"sources: {{files: {{url: '{bucket}', sinks: [out]}}}}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "run", "-c", str(config), "--metrics-port", str(port)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        samples = wait_for(lambda: (s := _try_scrape(url)) and value(
            s, "logferry_records_total") == 2 and s, timeout=30)  # fmt: skip
        # The age is set at each listing (every 0.2 s): the first one saw a.log waiting.
        samples = wait_for(lambda: (s := _try_scrape(url)) and value(
            s, "logferry_oldest_unshipped_age_seconds") == 0 and s, timeout=30)  # fmt: skip
        assert value(samples, "logferry_oldest_unshipped_age_seconds") == 0
        assert httpx.get(f"{url}/readyz").json() == {"ready": True, "problems": {}}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
