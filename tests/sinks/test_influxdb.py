"""InfluxDBSink: line-protocol escaping, URLs, and writes against a real influxd."""
# ruff: noqa: F811 (fixtures imported from tests.influx are parameters here)

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from logferry.engine.delivery import RetryPolicy
from logferry.errors import ConfigError, FatalSinkError
from logferry.records import Batch
from logferry.sinks import check_sink, open_sink
from logferry.sinks.influxdb import (
    InfluxDBSink,
    escape_field_string,
    escape_key,
    escape_measurement,
    parse_influx_url,
    stream_tag,
)
from tests.influx import InfluxServer, influxdb  # noqa: F401
from tests.sinks.conftest import retrying

FAST = RetryPolicy(max_attempts=2, base=0.001, cap=0.01)
T0 = 1_700_000_000_000  # ms, a whole second


def api_batch(n: int, *, start: int = 0, key: str = "api.log", same_ms: bool = True) -> Batch:
    """``n`` api-request records of two customers, all in the same millisecond by default."""
    fields: list[dict[str, Any] | None] = []
    for i in range(start, start + n):
        status = (200, 201, 404, 500)[i % 4]
        fields.append(
            {
                "customer_id": f"cust-{i % 2}",
                "request_path": f"/api/items/{i % 3}",
                "status_code": status,
                "duration": 0.001 * (i + 1),
                "success": 200 <= status < 400,
            }
        )
    return Batch(
        source="tail",
        key=key,
        start=start,
        end=start + n,
        lines=[f"line {i}" for i in range(start, start + n)],
        timestamps=[T0 if same_ms else T0 + i for i in range(start, start + n)],
        fields=fields,
        format="api-request",
    )


@pytest.fixture
def db(influxdb: InfluxServer) -> Iterator[str]:
    """A fresh database per test, on the session's server."""
    influxdb.drop_database(influxdb.database)
    influxdb.create_database(influxdb.database)
    yield influxdb.database


def sink_for(server: InfluxServer, query: str = "", **kw: Any) -> InfluxDBSink:
    return retrying(InfluxDBSink(f"influxdb+{server.url}/{server.database}{query}", **kw), FAST)


# -- escaping --------------------------------------------------------------------------


def test_escaping() -> None:
    assert escape_measurement("api requests,v2") == "api\\ requests\\,v2"
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_key("multi\nline") == "multi\\nline"
    assert escape_key("ends\\") == "ends"  # a trailing backslash would escape the separator
    assert escape_field_string('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert escape_field_string("a\nb") == '"a\nb"'


def test_point_shape() -> None:
    sink = InfluxDBSink("influxdb+http://127.0.0.1:1/db?measurement=my m")
    batch = api_batch(2)
    batch.fields[0]["customer_id"] = "acme, inc="  # type: ignore[index]
    points = sink.points(batch)
    stream = stream_tag("tail", "api.log")
    assert points[0] == (
        f"my\\ m,customer_id=acme\\,\\ inc\\=,stream={stream} status_code=200i,"
        f'duration=0.001,success=true,ok=1i,request_path="/api/items/0" {T0 * 1_000_000}'
    )
    assert points[1].endswith(f" {T0 * 1_000_000 + 1}")
    assert len(stream) == 8


def _as_numpy_columns(batch: Batch) -> Batch:
    """The same records with typed NumPy columns, as the api-request fast path yields them."""
    import numpy as np

    dicts = batch.fields or []
    fast = Batch(batch.source, batch.key, batch.start, batch.end, batch.lines, batch.timestamps)
    fast.columns = {
        "customer_id": np.array([d["customer_id"] for d in dicts], dtype=object),  # type: ignore[index]
        "request_path": np.array([d["request_path"] for d in dicts], dtype=object),  # type: ignore[index]
        "status_code": np.array([d["status_code"] for d in dicts], dtype=np.int16),  # type: ignore[index]
        "duration": np.array([d["duration"] for d in dicts]),  # type: ignore[index]
        "success": np.array([d["success"] for d in dicts]),  # type: ignore[index]
    }
    return fast


@pytest.mark.parametrize(
    "query", ["", "?tags=customer_id,request_path", "?tags=request_path", "?tags="]
)
def test_vectorised_points_equal_general_points(query: str) -> None:
    sink = InfluxDBSink(f"influxdb+http://127.0.0.1:1/db{query}")
    batch = api_batch(50, start=999_990, same_ms=False)
    batch.fields[0]["customer_id"] = "acme, inc="  # type: ignore[index]
    batch.fields[1]["customer_id"] = ""  # type: ignore[index]
    batch.fields[2]["request_path"] = 'say "hi" \\o/'  # type: ignore[index]
    batch.fields[3]["duration"] = 1e-05  # type: ignore[index]
    fast = _as_numpy_columns(batch)
    assert sink._points_vectorised(batch) is None  # per-record dicts: the general path
    assert sink._points_vectorised(fast) is not None
    assert sink.points(fast) == sink.points(batch)
    plain = api_batch(20)  # no quote or backslash anywhere: paths go in unescaped
    assert sink.points(_as_numpy_columns(plain)) == sink.points(plain)


def test_vectorised_points_fall_back_on_what_they_do_not_cover() -> None:
    import numpy as np

    sink = InfluxDBSink("influxdb+http://127.0.0.1:1/db")
    fast = _as_numpy_columns(api_batch(4))
    fast.columns["duration"][1] = np.nan  # type: ignore[index]
    assert sink._points_vectorised(fast) is None
    fast = _as_numpy_columns(api_batch(4))
    fast.columns["customer_id"][2] = None  # type: ignore[index]
    assert sink._points_vectorised(fast) is None
    assert "customer_id" not in sink.points(fast)[2]


def test_plain_records_write_line() -> None:
    sink = InfluxDBSink("influxdb+http://127.0.0.1:1/db")
    batch = Batch("s", "k", 5, 7, ['a "q"', "b"], [T0, T0], None, format="lines")
    assert sink.points(batch)[0] == (
        f'api_requests,stream={stream_tag("s", "k")} line="a \\"q\\"" {T0 * 1_000_000 + 5}'
    )


# -- URLs -------------------------------------------------------------------------------


def test_parse_v1_and_v2_urls() -> None:
    v1 = parse_influx_url("influxdb+https://h:8086/metrics?measurement=m&rp=week&tags=a,b")
    assert (v1.endpoint, v1.params, v1.version) == (
        "https://h:8086/write",
        {"db": "metrics", "precision": "ns", "rp": "week"},
        1,
    )
    assert (v1.measurement, v1.tags) == ("m", ("a", "b"))
    v2 = parse_influx_url("influxdb2+http://h:8086/my%20org/logs")
    assert (v2.endpoint, v2.params, v2.version) == (
        "http://h:8086/api/v2/write",
        {"org": "my org", "bucket": "logs", "precision": "ns"},
        2,
    )
    assert (v2.measurement, v2.tags) == ("api_requests", ("customer_id",))
    assert v2.concurrency == 2
    assert parse_influx_url("influxdb+http://h:8086/db?concurrency=5").concurrency == 5


@pytest.mark.parametrize(
    "url",
    [
        "influxdb+http://h:8086/",
        "influxdb+http://h:8086/a/b",
        "influxdb2+http://h:8086/org",
        "influxdb+http://u:p@h:8086/db",
        "influxdb+http://h:8086/db?precision=s",
        "influxdb+http://h:8086/db?bogus=1",
        "influxdb+http://h:8086/db?tags=stream",
        "influxdb+http://h:8086/db?concurrency=0",
        "influxdb+http://h:8086/db?concurrency=17",
        "influxdb+http://h:8086/db?concurrency=two",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_influx_url(url)


def test_v2_needs_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="INFLUXDB_TOKEN"):
        check_sink("influxdb2+http://h:8086/org/bucket")


class _Capture(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Capture.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_v2_request_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_TOKEN", "secret-token-123")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Capture.seen.clear()
    try:
        port = server.server_address[1]
        sink = open_sink(f"influxdb2+http://127.0.0.1:{port}/acme/logs")
        sink.write(api_batch(3))
        sink.close()
    finally:
        server.shutdown()
        server.server_close()
    (req,) = _Capture.seen
    assert req["path"] == "/api/v2/write?org=acme&bucket=logs&precision=ns"
    assert req["headers"]["Authorization"] == "Token secret-token-123"
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert gzip.decompress(req["body"]).decode().count("\n") == 3
    assert "secret" not in repr(sink)
    assert "secret" not in sink.name


class _Refuses(http.server.BaseHTTPRequestHandler):
    """Accepts writes slowly, and refuses the one holding the point of position 13."""

    lock = threading.Lock()
    in_flight = peak = 0

    def do_POST(self) -> None:
        body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
        time.sleep(0.05)
        with cls.lock:
            cls.in_flight -= 1
        bad = b"000013\n" in body
        self.send_response(400 if bad else 204)
        self.end_headers()
        if bad:
            self.wfile.write(b'{"error":"refused"}')

    def log_message(self, *args: Any) -> None:
        pass


def test_concurrent_requests_all_answered_and_first_failure_raised() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        sink = retrying(
            InfluxDBSink(f"influxdb+http://127.0.0.1:{port}/db?concurrency=3", max_points=2),
            FAST,
        )
        sink.write(api_batch(12))  # 6 requests, 3 at a time
        assert _Refuses.peak == 3
        with pytest.raises(FatalSinkError, match="refused"):
            sink.write(api_batch(12, start=12))
        assert _Refuses.in_flight == 0  # every request was answered before the raise
        sink.close()
    finally:
        server.shutdown()
        server.server_close()


# -- against influxd --------------------------------------------------------------------


def test_many_concurrent_requests_store_every_point(influxdb: InfluxServer, db: str) -> None:
    sink = sink_for(influxdb, "?concurrency=4", max_points=50)
    sink.write(api_batch(2000, same_ms=False))
    assert sink.counters()["requests"] == 40
    (total,) = influxdb.query('SELECT COUNT("duration") AS n FROM api_requests')
    assert total["n"] == 2000


def test_write_and_query(influxdb: InfluxServer, db: str) -> None:
    sink = sink_for(influxdb)
    sink.write(api_batch(8, same_ms=False))
    rows = influxdb.query("SELECT * FROM api_requests")
    assert len(rows) == 8
    first = rows[0]
    assert first["customer_id"] == "cust-0"
    assert first["status_code"] == 200
    assert first["ok"] == 1
    assert first["success"] is True
    assert first["request_path"] == "/api/items/0"
    assert first["time"] == T0 * 1_000_000
    (total,) = influxdb.query(
        'SELECT SUM("ok") AS successes, COUNT("duration") AS n FROM api_requests'
    )
    assert (total["successes"], total["n"]) == (4, 8)


def test_same_second_same_tags_never_overwrite_and_replay_is_idempotent(
    influxdb: InfluxServer,
    db: str,
) -> None:
    sink = sink_for(influxdb, max_points=7)  # several requests per batch
    batch = api_batch(50)  # every record in the same ms, two customers
    other = api_batch(50, key="other.log")  # same positions, another partition
    sink.write(batch)
    sink.write(other)
    sink.write(api_batch(50))  # replay
    (row,) = influxdb.query("SELECT COUNT(status_code) FROM api_requests")
    assert row["count"] == 100
    assert sink.counters()["requests"] >= 3 * 8


def test_strings_with_quotes_and_newlines_round_trip(influxdb: InfluxServer, db: str) -> None:
    sink = sink_for(influxdb, query="?measurement=raw%20logs")
    text = 'he said "hi"\\\nnext line, a=b'
    sink.write(Batch("s", "k", 0, 1, [text], [T0], None, format="lines"))
    (row,) = influxdb.query('SELECT line FROM "raw logs"')
    assert row["line"] == text


def test_request_path_as_tag(influxdb: InfluxServer, db: str) -> None:
    sink = sink_for(influxdb, query="?tags=customer_id,request_path")
    sink.write(api_batch(6))
    rows = influxdb.query('SELECT COUNT("duration") FROM api_requests GROUP BY "request_path"')
    assert sorted(r["request_path"] for r in rows) == [
        "/api/items/0",
        "/api/items/1",
        "/api/items/2",
    ]


def test_missing_database_is_fatal_with_influx_message(influxdb: InfluxServer) -> None:
    sink = retrying(InfluxDBSink(f"influxdb+{influxdb.url}/nope"), FAST)
    with pytest.raises(FatalSinkError, match="database not found"):
        sink.write(api_batch(1))


def test_type_conflict_is_fatal(influxdb: InfluxServer, db: str) -> None:
    sink = sink_for(influxdb)
    sink.write(api_batch(1))
    bad = api_batch(1, start=1)
    bad.fields[0]["status_code"] = 2.5  # type: ignore[index]
    bad.fields[0]["duration"] = None  # type: ignore[index]
    with pytest.raises(FatalSinkError, match="field type conflict"):
        sink.write(bad)


def test_auth_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with InfluxServer(auth=True) as server:
        monkeypatch.delenv("INFLUXDB_USER", raising=False)
        with pytest.raises(FatalSinkError, match="401"):
            sink_for(server).write(api_batch(1))
        monkeypatch.setenv("INFLUXDB_USER", server.user)
        monkeypatch.setenv("INFLUXDB_PASSWORD", server.password)
        sink = sink_for(server)
        sink.write(api_batch(3, same_ms=False))
        assert len(server.query("SELECT * FROM api_requests")) == 3
        monkeypatch.setenv("INFLUXDB_PASSWORD", "wrong-password-xyz")
        with pytest.raises(FatalSinkError) as err:
            sink_for(server).write(api_batch(1))
        assert "wrong-password-xyz" not in str(err.value)
