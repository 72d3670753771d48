"""The Mezmo test server's counting mode (``store=False, validate=False``), used by benchmarks."""

from __future__ import annotations

import gzip

import httpx
import orjson

from logferry.testing.mezmo_server import MezmoServer

KEY = "count-key"


def post(server: MezmoServer, body: bytes) -> httpx.Response:
    return httpx.post(
        server.endpoint,
        params={"hostname": "h", "now": "1"},
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(KEY, ""),
    )


def test_counting_mode_counts_every_entry_without_storing() -> None:
    entries = [
        {"line": f"hello {i}", "app": "a", "timestamp": 1_700_000_000_000 + i} for i in range(2500)
    ]
    with MezmoServer(KEY, store=False, validate=False) as server:
        answer = post(server, orjson.dumps({"lines": entries}))
        assert answer.status_code == 200, answer.text
        assert server.counters()["lines"] == 2500
        assert server.lines == []


def test_counting_mode_still_refuses_what_is_not_a_lines_body() -> None:
    with MezmoServer(KEY, store=False, validate=False) as server:
        assert post(server, b'{"lines": [{"line": "a"}').status_code == 400
        assert post(server, b'{"entries": []}').status_code == 400
        assert post(server, orjson.dumps({"lines": [{"no": "line"}]})).status_code == 400
        assert server.counters()["lines"] == 0
