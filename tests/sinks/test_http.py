"""The shared HTTP machinery against a real loopback server: gzip, retries, classification."""

from __future__ import annotations

import base64
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest

from logferry.engine.delivery import Delivered, Deliverer, Outcome, RetryLater, RetryPolicy
from logferry.errors import FatalSinkError, PayloadTooLargeError, RetryableSinkError
from logferry.records import Batch
from logferry.sinks.base import Sink
from logferry.sinks.http import HttpSender, parse_retry_after, safe_url, send_split
from logferry.testing.mezmo_server import MezmoServer

KEY = "test-secret-ingestion-key-0123456789"  # the conftest server's key
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
PARAMS = {"hostname": "h", "now": "1"}
BODY = orjson.dumps({"lines": [{"timestamp": 1, "line": "hello", "app": "t"}]})
FAST = RetryPolicy(max_attempts=5, base=0.001, cap=0.01)
BATCH = Batch("test", "k", 0, 1, ["hello"], [1])


@pytest.fixture
def sender() -> Iterator[HttpSender]:
    http = HttpSender(name="t", timeout=0.3, secrets=[KEY])
    yield http
    http.close()


def post(sender: HttpSender, server: MezmoServer, body: bytes = BODY) -> None:
    sender.post(server.endpoint, body, headers=AUTH, params=PARAMS)


def test_parse_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_safe_url_drops_credentials_and_query() -> None:
    assert safe_url("https://u:p@h:8443/a/b?token=x#f") == "https://h:8443/a/b"


def test_post_gzips_and_keeps_alive(server: MezmoServer, sender: HttpSender) -> None:
    for _ in range(3):
        post(sender, server)
    reqs = server.requests
    assert [r.status for r in reqs] == [200, 200, 200]
    assert reqs[0].headers["content-encoding"] == "gzip"
    assert reqs[0].decoded_bytes == len(BODY)
    assert reqs[0].body_bytes != len(BODY)
    assert server.lines[0]["line"] == "hello"
    assert sender.counters() == {"requests": 3, "failed": 0}


def test_gzip_level_zero_sends_identity(server: MezmoServer) -> None:
    http = HttpSender(gzip_level=0)
    try:
        post(http, server)
    finally:
        http.close()
    assert "content-encoding" not in server.requests[0].headers
    assert gzip.compress(b"x")  # module sanity, gzip still available to callers


class PostSink(Sink):
    """Posts one fixed body per batch: the smallest HTTP sink."""

    def __init__(self, sender: HttpSender, server: MezmoServer) -> None:
        self.sender, self.server = sender, server

    def write(self, batch: Batch) -> None:
        post(self.sender, self.server)


def deliver(sender: HttpSender, server: MezmoServer, sleeps: list[float]) -> Outcome:
    """One batch through the engine's retry layer, with waits recorded, not slept."""
    return Deliverer(FAST, sleep=sleeps.append).deliver(PostSink(sender, server), BATCH)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_status_is_retryable_and_the_deliverer_retries(
    server: MezmoServer, sender: HttpSender, sleeps: list[float], status: int
) -> None:
    server.fail_next(1, status)
    with pytest.raises(RetryableSinkError, match=str(status)):
        post(sender, server)  # the sender itself tries once
    server.fail_next(2, status)
    outcome = deliver(sender, server, sleeps)
    assert outcome == Delivered(3)
    assert [r.status for r in server.requests] == [status, status, status, 200]
    assert len(sleeps) == 2
    assert all(0 <= s <= 0.01 for s in sleeps)
    assert len(server.lines) == 1


def test_retry_after_is_honoured(
    server: MezmoServer, sender: HttpSender, sleeps: list[float]
) -> None:
    server.fail_next(1, 429, retry_after=2)
    assert isinstance(deliver(sender, server, sleeps), Delivered)
    assert sleeps == [2.0]


def test_retries_exhausted_give_retry_later(
    server: MezmoServer, sender: HttpSender, sleeps: list[float]
) -> None:
    server.fail_next(10, 503, retry_after=1)
    outcome = deliver(sender, server, sleeps)
    assert isinstance(outcome, RetryLater)
    assert "503" in outcome.reason
    assert "5 attempts" in outcome.reason
    assert isinstance(outcome.error, RetryableSinkError)
    assert outcome.error.retry_after == 1.0
    assert len(sleeps) == 4
    assert KEY not in outcome.reason


@pytest.mark.parametrize("fault", ["timeout", "reset"])
def test_timeouts_and_resets_are_retryable(
    server: MezmoServer, sender: HttpSender, sleeps: list[float], fault: str
) -> None:
    server.fail_next(1, fault)
    assert deliver(sender, server, sleeps) == Delivered(2)
    assert len(server.lines) == 1


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = HttpSender()
    try:
        with pytest.raises(RetryableSinkError, match="ConnectError"):
            http.post(f"http://127.0.0.1:{port}/x", b"{}")
    finally:
        http.close()
    assert http.counters() == {"requests": 1, "failed": 1}


def test_413_raises_payload_too_large(sender: HttpSender) -> None:
    with (
        MezmoServer(ingestion_key=KEY, max_body_bytes=10) as small,
        pytest.raises(PayloadTooLargeError, match="413"),
    ):
        post(sender, small)


def test_4xx_is_fatal_with_status_and_snippet(server: MezmoServer, sender: HttpSender) -> None:
    with pytest.raises(FatalSinkError) as info:
        sender.post(server.endpoint, BODY, headers=AUTH, params={"now": "1"})
    msg = str(info.value)
    assert "HTTP 400" in msg
    assert "hostname" in msg
    assert "\n" not in msg


def test_401_is_fatal_with_hint_and_no_secret(server: MezmoServer) -> None:
    http = HttpSender(secrets=[KEY], hints={401: "check the key"})
    try:
        with pytest.raises(FatalSinkError) as info:
            http.post(server.endpoint, BODY, params=PARAMS)
    finally:
        http.close()
    assert "HTTP 401" in str(info.value)
    assert "check the key" in str(info.value)


def test_secrets_are_scrubbed_from_messages(server: MezmoServer) -> None:
    # The 404 message names the path; pretend the path is a secret.
    http = HttpSender(secrets=["s3cr3t"])
    try:
        with pytest.raises(FatalSinkError) as info:
            http.post(server.endpoint.replace("/logs/ingest", "/s3cr3t"), BODY, headers=AUTH)
    finally:
        http.close()
    assert "s3cr3t" not in str(info.value)
    assert "***" in str(info.value)


def test_params_callable_is_evaluated_per_request(server: MezmoServer, sender: HttpSender) -> None:
    calls: list[int] = []

    def params() -> dict[str, str]:
        calls.append(1)
        return {"hostname": "h", "now": str(len(calls))}

    server.fail_next(1, 503)
    with pytest.raises(RetryableSinkError):
        sender.post(server.endpoint, BODY, headers=AUTH, params=params)
    sender.post(server.endpoint, BODY, headers=AUTH, params=params)
    assert [r.params["now"] for r in server.requests] == ["1", "2"]


def test_stop_event_interrupts_backoff(server: MezmoServer, sender: HttpSender) -> None:
    stop = threading.Event()
    server.fail_next(1, 503, retry_after=60)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    outcome = Deliverer(FAST, stop).deliver(PostSink(sender, server), BATCH)
    assert isinstance(outcome, RetryLater)
    assert outcome.stopped
    assert time.monotonic() - t0 < 5


def test_send_split_halves_until_accepted_in_order() -> None:
    sent: list[list[int]] = []

    def send(body: bytes) -> None:
        items = orjson.loads(body)
        if len(items) > 3:
            raise PayloadTooLargeError("too large")
        sent.append(items)

    n = send_split(list(range(20)), orjson.dumps, send)
    assert [i for part in sent for i in part] == list(range(20))
    assert n == len(sent)
    assert all(len(p) <= 3 for p in sent)


def test_send_split_pre_splits_over_max_bytes() -> None:
    bodies: list[bytes] = []
    send_split(list(range(100)), orjson.dumps, bodies.append, max_bytes=50)
    assert all(len(b) <= 50 for b in bodies)
    assert [i for b in bodies for i in orjson.loads(b)] == list(range(100))


def test_send_split_single_item_too_large_is_fatal() -> None:
    def send(body: bytes) -> None:
        raise PayloadTooLargeError("413")

    with pytest.raises(FatalSinkError, match="too large"):
        send_split(["x" * 100, "y"], orjson.dumps, send)
