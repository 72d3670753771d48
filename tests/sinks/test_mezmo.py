"""MezmoSink against a real Mezmo-compatible server on loopback."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import cast

import pytest

from logferry.engine.delivery import RetryPolicy
from logferry.errors import ConfigError, FatalSinkError, RetryableSinkError
from logferry.records import Batch
from logferry.sinks.mezmo import (
    IBM_REGIONS,
    MezmoSink,
    from_url,
    parse_mezmo_url,
    truncate_line,
)
from logferry.testing.mezmo_server import MezmoServer

KEY = "test-secret-ingestion-key-0123456789"  # the conftest server's key
MakeSink = Callable[..., MezmoSink]
MakeBatch = Callable[..., Batch]


# -- URLs and configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("mezmo+https://logs.mezmo.com/logs/ingest", "https://logs.mezmo.com/logs/ingest"),
        ("mezmo+https://logs.mezmo.com", "https://logs.mezmo.com/logs/ingest"),
        ("logdna+https://logs.example.com/", "https://logs.example.com/logs/ingest"),
        ("MEZMO+HTTP://127.0.0.1:8080/custom/path", "http://127.0.0.1:8080/custom/path"),
        ("logdna+http://localhost:9000", "http://localhost:9000/logs/ingest"),
        ("mezmo+http://[::1]:8080", "http://[::1]:8080/logs/ingest"),
        ("logdna:eu-de", "https://logs.eu-de.logging.cloud.ibm.com/logs/ingest"),
        ("mezmo:us-south", "https://logs.us-south.logging.cloud.ibm.com/logs/ingest"),
        ("logdna:private.jp-tok", "https://logs.private.jp-tok.logging.cloud.ibm.com/logs/ingest"),
    ],
)
def test_parse_mezmo_url(url: str, endpoint: str) -> None:
    assert parse_mezmo_url(url) == (endpoint, {})


def test_every_ibm_region_resolves() -> None:
    for region in IBM_REGIONS:
        endpoint, _ = parse_mezmo_url(f"logdna:{region}")
        assert endpoint == f"https://logs.{region}.logging.cloud.ibm.com/logs/ingest"


def test_url_query_options() -> None:
    url = "mezmo+https://h/logs/ingest?hostname=web1&tags=a,b&app=api"
    assert parse_mezmo_url(url) == (
        "https://h/logs/ingest",
        {"hostname": "web1", "tags": "a,b", "app": "api"},
    )
    assert parse_mezmo_url("logdna:eu-gb?tags=x")[1] == {"tags": "x"}


def test_unknown_region_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_mezmo_url("logdna:mars-1")
    assert "mars-1" in str(info.value)
    assert all(region in str(info.value) for region in IBM_REGIONS)


@pytest.mark.parametrize(
    "url",
    [
        "mezmo+https://SECRETKEY:@logs.mezmo.com/logs/ingest",
        "logdna+https://user:SECRETKEY@logs.mezmo.com",
        "mezmo+https://logs.mezmo.com/logs/ingest?apikey=SECRETKEY",
        "mezmo+https://logs.mezmo.com/logs/ingest?ingestion_key=SECRETKEY",
    ],
)
def test_key_in_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mezmo_url(url)
    assert "LOGDNA_INGESTION_KEY" in str(info.value)
    assert "SECRETKEY" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/x",
        "mezmo+ftp://h",
        "mezmo+https://",
        "https//nope",
        "logdna+https:///x",
        "mezmo+https://h:port/x",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_mezmo_url(url)


def test_unknown_url_option() -> None:
    with pytest.raises(ConfigError, match="unknown Mezmo URL option 'colour'"):
        parse_mezmo_url("mezmo+https://h?colour=red")


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
    monkeypatch.delenv("MEZMO_INGESTION_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        MezmoSink("logdna:eu-de")
    assert str(info.value) == "no ingestion key: set LOGDNA_INGESTION_KEY or MEZMO_INGESTION_KEY"


@pytest.mark.parametrize("var", ["LOGDNA_INGESTION_KEY", "MEZMO_INGESTION_KEY"])
def test_key_from_env(
    monkeypatch: pytest.MonkeyPatch, server: MezmoServer, make_batch: MakeBatch, var: str
) -> None:
    monkeypatch.delenv("LOGDNA_INGESTION_KEY", raising=False)
    monkeypatch.delenv("MEZMO_INGESTION_KEY", raising=False)
    monkeypatch.setenv(var, KEY)
    sink = from_url(server.url, hostname="h")
    try:
        sink.write(make_batch(3))
    finally:
        sink.close()
    assert len(server.lines) == 3


def test_key_never_shown(make_sink: MakeSink) -> None:
    sink = make_sink()
    token = base64.b64encode(f"{KEY}:".encode()).decode()
    for text in (repr(sink), str(sink), sink.name, repr(sink._http), str(sink.counters())):
        assert KEY not in text
        assert token not in text
    assert sink.name.startswith("mezmo(http://127.0.0.1:")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="10000000"):
        MezmoSink("logdna:eu-de", ingestion_key="k", max_request_bytes=20_000_000)
    with pytest.raises(ConfigError):
        MezmoSink("logdna:eu-de", ingestion_key="k", max_lines=0)


def test_explicit_options_beat_url_query(server: MezmoServer, make_batch: MakeBatch) -> None:
    sink = MezmoSink(server.url + "?hostname=from-url&tags=u", ingestion_key=KEY, tags="t1, t2")
    try:
        sink.write(make_batch(1))
    finally:
        sink.close()
    params = server.requests[0].params
    assert params["hostname"] == "from-url"
    assert params["tags"] == "t1,t2"


# -- what goes over the wire --------------------------------------------------------


def test_request_auth_params_gzip_and_body(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    sink = make_sink(app="myapp", tags=["a", "b"])
    batch = make_batch(50, start_ms=1_600_000_000_123)
    before = time.time() * 1000
    sink.write(batch)
    (req,) = server.requests
    assert req.method == "POST"
    assert req.path == "/logs/ingest"
    assert req.status == 200
    expected = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert req.headers["authorization"] == expected
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    assert req.params["hostname"] == "test-host"
    assert req.params["tags"] == "a,b"
    assert before - 1000 <= int(req.params["now"]) <= time.time() * 1000 + 1000
    lines = server.lines
    assert lines == [
        {"timestamp": ts, "line": line, "app": "myapp"}
        for ts, line in zip(batch.timestamps, batch.lines, strict=True)
    ]
    assert sink.counters() == {
        "requests": 1,
        "lines": 50,
        "truncated": 0,
        "splits": 0,
        "retries": 0,
    }


def test_no_tags_param_without_tags(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    make_sink().write(make_batch(1))
    assert "tags" not in server.requests[0].params


def test_level_from_fields_and_meta_option(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    fields = [{"level": "error"}, {"level": 3}, {}, {"level": "info", "x": 1}]
    make_sink(include_meta=True).write(make_batch(4, fields=fields, key="k1", source="s3"))
    lines = server.lines
    assert [line.get("level") for line in lines] == ["error", None, None, "info"]
    assert all(line["meta"] == {"source": "s3", "key": "k1"} for line in lines)


def test_unicode_and_escapes_survive(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    batch = make_batch(3)
    batch.lines = ['quote " backslash \\ tab \t', "héllo wörld ✓ 日本", "ctrl \x01 nl \n"]
    make_sink().write(batch)
    assert [line["line"] for line in server.lines] == batch.lines


def test_empty_batch_sends_nothing(server: MezmoServer, make_sink: MakeSink) -> None:
    make_sink().write(Batch("s", "k", 0, 0, [], []))
    assert server.requests == []


# -- truncation ----------------------------------------------------------------------


def test_truncate_line_marker_and_utf8_boundary() -> None:
    assert truncate_line("short", 1024) is None
    cut = truncate_line("é" * 1000, 500)  # 2000 bytes
    assert cut is not None
    assert len(cut.encode()) <= 500
    assert cut.endswith(f" …[truncated {2000 - 2 * cut.index(' ')} bytes]")


def test_long_lines_truncated_never_dropped(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    sink = make_sink(max_line_bytes=1024)
    batch = make_batch(3)
    batch.lines[1] = "A" * 100_000
    batch.lines[2] = "✓" * 300  # 300 chars < 1024, but 900 bytes: fits, untouched
    sink.write(batch)
    lines = [line["line"] for line in server.lines]
    assert len(lines) == 3
    assert lines[0] == batch.lines[0]
    assert lines[2] == batch.lines[2]
    assert len(lines[1].encode()) <= 1024
    assert lines[1].startswith("AAAA")
    kept = len(lines[1].split(" …[truncated ")[0])
    assert lines[1].endswith(f" …[truncated {100_000 - kept} bytes]")
    assert sink.counters()["truncated"] == 1


# -- splitting -----------------------------------------------------------------------


def test_split_under_max_request_bytes(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    sink = make_sink(max_request_bytes=20_000)
    batch = make_batch(2000, width=100)
    sink.write(batch)
    reqs = server.requests
    assert len(reqs) >= 10
    assert all(r.decoded_bytes <= 20_000 for r in reqs)
    # Sizes are measured: requests are filled, not halved.
    assert all(r.decoded_bytes > 15_000 for r in reqs[:-1])
    assert [line["line"] for line in server.lines] == batch.lines
    assert sink.counters()["requests"] == len(reqs)


def test_split_when_escapes_beat_the_estimate(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    sink = make_sink(max_request_bytes=20_000)
    batch = make_batch(500)
    backslashes = "\\" * 60
    batch.lines = [f'{i} "{backslashes}"' for i in range(500)]  # escaping doubles the size
    sink.write(batch)
    assert all(r.decoded_bytes <= 20_000 for r in server.requests)
    assert [line["line"] for line in server.lines] == batch.lines
    assert sink.counters()["requests"] == len(server.requests) > 1


def test_max_lines_per_request(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    make_sink(max_lines=100).write(make_batch(250))
    assert [r.lines for r in server.requests] == [100, 100, 50]


def test_413_splits_and_every_line_arrives_once(make_sink: MakeSink, make_batch: MakeBatch) -> None:
    with MezmoServer(ingestion_key=KEY, max_body_bytes=6_000) as small:
        sink = make_sink(url=small.url)
        batch = make_batch(500, width=60)
        sink.write(batch)
        assert 413 in small.statuses()
        assert [line["line"] for line in small.lines] == batch.lines
        assert sink.counters()["splits"] > 0


def test_one_line_over_the_server_limit_is_fatal(
    make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    with MezmoServer(ingestion_key=KEY, max_body_bytes=500) as small:
        batch = make_batch(2)
        batch.lines[1] = "x" * 1000
        with pytest.raises(FatalSinkError, match="too large"):
            make_sink(url=small.url).write(batch)


# -- failures ------------------------------------------------------------------------


def test_429_retry_after_honoured(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch, sleeps: list[float]
) -> None:
    server.fail_next(1, 429, retry_after=3)
    sink = make_sink()
    sink.write(make_batch(10))
    assert sleeps == [3.0]
    assert len(server.lines) == 10
    assert sink.counters()["retries"] == 1


def test_5xx_then_success(server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch) -> None:
    server.fail_next(1, 500)
    server.fail_next(1, 503)
    make_sink().write(make_batch(10))
    assert [r.status for r in server.requests] == [500, 503, 200]
    assert len(server.lines) == 10


def test_now_is_fresh_on_each_retry(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    server.fail_next(1, 503)
    sink = make_sink(sleep=lambda _: time.sleep(0.05))
    sink.write(make_batch(1))
    first, second = (int(r.params["now"]) for r in server.requests)
    assert second >= first + 40


@pytest.mark.parametrize("fault", ["timeout", "reset"])
def test_timeouts_and_resets_retried(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch, fault: str
) -> None:
    server.fail_next(2, fault)
    batch = make_batch(20)
    make_sink().write(batch)
    assert [line["line"] for line in server.lines] == batch.lines


def test_retries_exhausted(server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch) -> None:
    server.fail_ratio = 1.0
    server.fail_choices = (503,)
    sink = make_sink(retry=RetryPolicy(max_attempts=4, base=0.001))
    with pytest.raises(RetryableSinkError, match="503") as info:
        sink.write(make_batch(5))
    assert KEY not in str(info.value)
    assert server.lines == []
    assert len(server.requests) == 4


def test_401_is_fatal_and_says_which_env_var(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    sink = make_sink(ingestion_key="wrong-key-abcdef")
    with pytest.raises(FatalSinkError) as info:
        sink.write(make_batch(1))
    msg = str(info.value)
    assert "401" in msg
    assert "LOGDNA_INGESTION_KEY" in msg
    assert "wrong-key-abcdef" not in msg
    assert KEY not in msg
    assert base64.b64encode(b"wrong-key-abcdef:").decode() not in msg


def test_400_is_fatal_with_the_servers_reason(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    batch = make_batch(2)
    batch.timestamps = cast(list[int], [1.5, 2.5])  # floats: the server must refuse them
    with pytest.raises(FatalSinkError) as info:
        make_sink().write(batch)
    assert "HTTP 400" in str(info.value)
    assert "timestamp" in str(info.value)
    assert KEY not in str(info.value)


def test_concurrent_writers_under_random_faults(
    server: MezmoServer, make_sink: MakeSink, make_batch: MakeBatch
) -> None:
    server.fail_ratio = 0.3
    server.fail_choices = (429, 500, 503, "reset")
    sink = make_sink(max_request_bytes=4_000, timeout=5.0)  # no timeouts under load
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for b in range(5):
                sink.write(make_batch(100, key=f"w{w}-b{b}", start_ms=w * 10**6 + b * 1000))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    timestamps = sorted(line["timestamp"] for line in server.lines)
    expected = sorted(
        w * 10**6 + b * 1000 + i for w in range(4) for b in range(5) for i in range(100)
    )
    assert timestamps == expected  # every line exactly once
    assert sink.counters()["retries"] > 0
    assert sink.counters()["lines"] == 2000
