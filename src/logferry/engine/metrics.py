"""What the engine counts, as Prometheus metrics, and the endpoint that serves them.

One process keeps one set of metrics (:data:`METRICS`). The runners count records, bytes and
batches per source and sink, failures by error class, retries, delivery latency, claims
held and lag; ``--metrics-port`` serves them at ``/metrics`` next to ``/healthz`` (the
process is alive) and ``/readyz`` (its ledger is writable and its sinks and sources answer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("logferry")

#: Batch delivery latency buckets, seconds: a local file in milliseconds, an ingest API under
#: load in seconds, a sink that is down up to the retry time.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The engine's metrics in a registry of their own (names in ``docs/metrics.md``)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.records = Counter(
            "logferry_records_total", "Records a sink acknowledged.", ["source", "sink"],
            registry=r,
        )  # fmt: skip
        self.bytes = Counter(
            "logferry_bytes_total", "Bytes of log lines a sink acknowledged.", ["source", "sink"],
            registry=r,
        )  # fmt: skip
        self.batches = Counter(
            "logferry_batches_total",
            "Batches by final outcome (delivered, retry_later, refused).",
            ["source", "sink", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "logferry_retries_total", "Delivery attempts that were retried.", ["sink"], registry=r
        )
        self.failures = Counter(
            "logferry_failures_total",
            "Objects, partitions and record ranges that failed, by error class.",
            ["source", "error_class"],
            registry=r,
        )
        self.delivery = Histogram(
            "logferry_batch_delivery_seconds",
            "Time to deliver a batch to a sink, retries included.",
            ["sink"],
            buckets=_LATENCY,
            registry=r,
        )
        self.claims = Gauge(
            "logferry_claims_held", "Objects and partitions this process holds.", ["source"],
            registry=r,
        )  # fmt: skip
        self.oldest_unshipped = Gauge(
            "logferry_oldest_unshipped_age_seconds",
            "Age (by LastModified) of the oldest object not yet shipped, at the last listing.",
            ["source"],
            registry=r,
        )
        self.bytes_behind = Gauge(
            "logferry_bytes_behind",
            "Bytes of a followed file not yet read.",
            ["source", "partition"],
            registry=r,
        )
        self.ingestion_delay = Gauge(
            "logferry_ingestion_delay_seconds",
            "CloudWatch: seconds between an event's ingestion and its reading, newest event.",
            ["source", "partition"],
            registry=r,
        )
        self.error_queue = Gauge(
            "logferry_error_queue_entries",
            "Entries in the error queue (failed objects and dead letters).",
            ["kind"],
            registry=r,
        )
        self.worker_messages = Counter(
            "logferry_worker_messages_total",
            "Worker queue messages by lane and what became of them "
            "(received, acked, naked, dead_lettered, forwarded).",
            ["lane", "outcome"],
            registry=r,
        )
        self.worker_in_flight = Gauge(
            "logferry_worker_in_flight", "Queue messages a worker is handling now.", ["lane"],
            registry=r,
        )  # fmt: skip
        self._health: dict[str, tuple[bool, str]] = {}
        self._lock = threading.Lock()

    def health(self, component: str, ok: bool, reason: str = "") -> None:
        """Record whether ``component`` (a sink, a source listing) answered last time."""
        with self._lock:
            self._health[component] = (ok, reason)

    def forget(self, component: str) -> None:
        """``component`` is no longer in use (its run ended): it no longer counts."""
        with self._lock:
            self._health.pop(component, None)

    def unhealthy(self) -> dict[str, str]:
        """Components whose last answer was a failure, with the reason."""
        with self._lock:
            return {name: why for name, (ok, why) in self._health.items() if not ok}


#: The metrics of this process.
METRICS = Metrics()


def measure_lag(source: str, held: Any) -> None:
    """Set the lag gauges of one followed partition (a ``Held``) after a read."""
    partition = held.partition
    behind, delay = partition.bytes_behind(), partition.ingestion_delay()
    if behind is not None:
        METRICS.bytes_behind.labels(source, held.info.key).set(behind)
    if delay is not None:
        METRICS.ingestion_delay.labels(source, held.info.key).set(delay)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port``, in a daemon thread.

    ``ready`` returns the problems that make the process not ready (empty: ready), for
    example the ledger not writable; sinks and sources that failed their last call are added.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        ready: Callable[[], dict[str, str]] | None = None,
        metrics: Metrics = METRICS,
    ) -> None:
        self.metrics = metrics
        self.ready = ready or dict
        self.started = time.time()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.metrics.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    problems = server.problems()
                    body = orjson.dumps({"ready": not problems, "problems": problems})
                    self._send(503 if problems else 200, body + b"\n", "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the log

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="logferry-metrics", daemon=True
        )

    def problems(self) -> dict[str, str]:
        """What keeps the process from being ready (empty when ready)."""
        try:
            found = dict(self.ready())
        except Exception as exc:  # a readiness check that fails is itself a problem
            found = {"readiness": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        found.update(self.metrics.unhealthy())
        return found

    def start(self) -> MetricsServer:
        """Start serving."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
