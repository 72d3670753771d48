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


def test_counting_later_counts_when_asked_and_raises_for_a_bad_body() -> None:
    entries = [{"line": f"x {i}", "app": "a", "timestamp": 1_700_000_000_000} for i in range(300)]
    with MezmoServer(KEY, store=False, validate=False, count_later=True) as server:
        for _ in range(3):
            assert post(server, orjson.dumps({"lines": entries})).status_code == 200
        assert server.counters() | {"bytes": 0} == {
            "requests": 3, "accepted": 3, "lines": 900, "bytes": 0,
        }  # fmt: skip
        assert server.counters()["lines"] == 900  # counted once
        assert post(server, b'{"lines": [').status_code == 200  # not looked at yet
        try:
            server.counters()
        except RuntimeError as exc:
            assert "bad" in str(exc)
        else:
            raise AssertionError("a bad body counted later must raise")
