"""CloudWatch Logs fixtures: moto in server mode on loopback, a throttling proxy, a CLI runner."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest


@pytest.fixture(scope="session")
def logs_endpoint() -> Iterator[str]:
    """A CloudWatch Logs endpoint: moto in server mode on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def logs(logs_endpoint: str) -> Any:
    """A boto3 ``logs`` client on the loopback endpoint."""
    return boto3.client("logs", endpoint_url=logs_endpoint, region_name="us-east-1")


@pytest.fixture()
def prefix() -> str:
    """A group prefix no other test uses (moto keeps state for the whole session)."""
    return f"/test/{uuid.uuid4().hex[:10]}/"


def put(
    logs: Any, group: str, stream: str, messages: list[str], start_ms: int | None = None
) -> list[dict[str, Any]]:
    """Create group and stream if needed, put ``messages`` 1 ms apart; return the events."""
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    base = start_ms if start_ms is not None else int(time.time() * 1000) - 60_000
    events = [{"timestamp": base + i, "message": m} for i, m in enumerate(messages)]
    for i in range(0, len(events), 5000):
        logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=events[i : i + 5000]
        )
    return events


def cw_env(endpoint: str, **extra: str) -> dict[str, str]:
    """The environment for a CLI process pointed at ``endpoint``."""
    return {**os.environ, "AWS_ENDPOINT_URL": endpoint, **extra}


def run_cw(
    *args: str, endpoint: str, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``logferry cloudwatch ARGS`` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "logferry.cli.cloudwatch", *args],
        capture_output=True,
        text=True,
        env=cw_env(endpoint, **extra),
        timeout=timeout,
    )


def start_cw(*args: str, endpoint: str, **extra: str) -> subprocess.Popen[str]:
    """Start ``logferry cloudwatch ARGS`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "logferry.cli.cloudwatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cw_env(endpoint, **extra),
    )


def data_files(root: Path) -> list[Path]:
    """The downloaded files (state excluded)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and ".logferry" not in p.parts)


class ThrottlingProxy:
    """Forwards to moto, answering every ``every``-th GetLogEvents/DescribeLogStreams call
    with AWS's 400 ThrottlingException (JSON protocol)."""

    def __init__(self, upstream: str, every: int = 3) -> None:
        self.upstream = urlsplit(upstream)
        self.every = every
        self.calls = 0
        self.throttled = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                if target.endswith(("GetLogEvents", "DescribeLogStreams")):
                    with proxy._lock:
                        proxy.calls += 1
                        throttle = proxy.calls % proxy.every == 0
                        proxy.throttled += throttle
                    if throttle:
                        payload = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
                        self.send_response(400)
                        self.send_header("x-amzn-ErrorType", "ThrottlingException")
                        self.send_header("Content-Type", "application/x-amz-json-1.1")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in (
                        "content-length",
                        "connection",
                        "transfer-encoding",
                        "server",
                        "date",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def throttling_proxy(logs_endpoint: str) -> Iterator[ThrottlingProxy]:
    """A proxy in front of moto that throttles every third read."""
    proxy = ThrottlingProxy(logs_endpoint, every=3)
    yield proxy
    proxy.close()
