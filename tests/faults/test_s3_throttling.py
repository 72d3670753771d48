"""S3 throttling: ``503 SlowDown`` from a real HTTP proxy in front of the S3 endpoint.

botocore's ``standard`` retry mode must absorb passing throttles on listings
and object GETs; a throttle that never stops fails only its object, with a one-line reason.
"""

from __future__ import annotations

import collections
import http.client
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from logferry.sources.s3 import S3Source

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>%s</RequestId></Error>"
)
# Hop-by-hop headers, and the framing the proxy recomputes for the whole body it relays.
DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass(frozen=True)
class Seen:
    """One request the proxy relayed or throttled."""

    method: str
    path: str
    query: str
    throttled: bool


class ThrottlingProxy:
    """Reverse proxy on a free loopback port; ``throttle(method, path, query, n)`` picks the
    requests answered with 503 SlowDown (``n`` counts GETs from 1) instead of relayed."""

    def __init__(self, upstream: str, throttle: Callable[[str, str, str, int], bool]) -> None:
        self.upstream = urlsplit(upstream)
        self.throttle = throttle
        self.seen: list[Seen] = []
        self._gets = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def throttled(self, pred: Callable[[Seen], bool] = lambda s: True) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.throttled and pred(s))

    def requests(self, pred: Callable[[Seen], bool] = lambda s: True) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if pred(s)]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            if h.command == "GET":
                self._gets += 1
            throttle = self.throttle(h.command, path, query, self._gets)
            self.seen.append(Seen(h.command, path, query, throttle))
        if throttle:
            payload = SLOWDOWN % uuid.uuid4().hex.encode()
            h.send_response(503, "Slow Down")
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(self.upstream.netloc, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in DROPPED}
            headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        h.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in DROPPED:
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)


def body(obj: int, lines: int) -> bytes:
    return b"".join(b"t%02d-%04d\n" % (obj, i) for i in range(lines))


def is_listing(s: Seen) -> bool:
    return s.method == "GET" and "list-type=2" in s.query


def ship_through(
    proxy: ThrottlingProxy, bucket: str, tmp_path: Path, mezmo: Any, *extra: str, code: str = ""
) -> subprocess.CompletedProcess[str]:
    """``logferry ship`` in a real process whose S3 endpoint is the proxy (``code``: ``-c``)."""
    main = ["-c", code] if code else ["-m", "logferry"]
    cmd = [sys.executable, *main, "ship", f"s3://{bucket}/app/", "--to", mezmo.url,
           "--endpoint-url", proxy.url, "--ledger", str(tmp_path / "l.db"), "--json", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=60)


def test_passing_throttles_are_retried(
    s3: Any, bucket: str, s3_endpoint: str, tmp_path: Path, mezmo: Any
) -> None:
    objects, lines = 12, 500
    for o in range(objects):
        s3.put_object(Bucket=bucket, Key=f"app/{o:02d}.log", Body=body(o, lines))
    # GETs 1, 4, 7, …: the first listing, then every third request, objects and listings alike
    with ThrottlingProxy(s3_endpoint, lambda m, p, q, n: m == "GET" and n % 3 == 1) as proxy:
        p = ship_through(proxy, bucket, tmp_path, mezmo)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    summary = orjson.loads(p.stdout.splitlines()[-1])
    assert summary["failed"] == []
    assert summary["objects"] == objects
    counts = collections.Counter(x["line"] for x in mezmo.lines)
    assert counts == collections.Counter(
        ln.decode() for o in range(objects) for ln in body(o, lines).splitlines()
    )
    listed = proxy.throttled(is_listing)
    fetched = proxy.throttled(lambda s: s.path.startswith(f"/{bucket}/app/"))
    assert listed >= 1, (listed, fetched)
    assert fetched >= 3, (listed, fetched)
    # each object was read once after its throttles: a retry, not a re-read of the object
    ok_gets = collections.Counter(
        s.path for s in proxy.requests(lambda s: s.method == "GET" and not s.throttled)
    )
    assert all(ok_gets[f"/{bucket}/app/{o:02d}.log"] == 1 for o in range(objects))
    print(f"\nthrottling: {listed} listing and {fetched} object GETs answered 503 SlowDown, 0 lost")


# botocore waits rand() * min(2 ** attempt, 20) s before each retry of a throttle, about a
# minute over all attempts. The CLI runs unchanged but with that delay scaled down a hundredfold.
FAST_BACKOFF = (
    "import botocore.retries.standard as s; d = s.ExponentialBackoff.delay_amount; "
    "s.ExponentialBackoff.delay_amount = lambda self, ctx: d(self, ctx) / 100; "
    "from logferry.cli.main import main; main()"
)


def test_endless_throttling_fails_only_that_object(
    s3: Any, bucket: str, s3_endpoint: str, tmp_path: Path, mezmo: Any
) -> None:
    for name in ("a", "stuck", "z"):
        s3.put_object(Bucket=bucket, Key=f"app/{name}.log", Body=b"%s\n" % name.encode() * 50)
    stuck = f"/{bucket}/app/stuck.log"
    with ThrottlingProxy(s3_endpoint, lambda m, p, q, n: m == "GET" and p == stuck) as proxy:
        p = ship_through(proxy, bucket, tmp_path, mezmo, "--max-attempts", "1", code=FAST_BACKOFF)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    summary = orjson.loads(p.stdout.splitlines()[-1])
    assert summary["objects"] == 2
    [failure] = summary["failed"]
    assert failure["key"] == "app/stuck.log"
    assert "SlowDown" in failure["error"], failure
    assert "\n" not in failure["error"], failure
    print(f"\nthrottling: endless SlowDown -> {failure}")
    assert f"failed app/stuck.log: {failure['error']}" in p.stderr
    # the client's standard retry mode: every attempt it allows, then the object fails
    retries = S3Source(bucket, endpoint_url=proxy.url).client.meta.config.retries
    assert retries["mode"] == "standard"
    assert len(proxy.requests(lambda s: s.path == stuck)) == retries["total_max_attempts"]
    assert collections.Counter(x["line"] for x in mezmo.lines) == {"a": 50, "z": 50}
