"""Plain http:// carries credentials only to loopback, unless allow_insecure_http says so."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logferry.config import SinkOptions, parse_pipeline
from logferry.errors import ConfigError
from logferry.pipeline import check_pipeline
from logferry.records import Batch
from logferry.serverless.common import _default_sinks
from logferry.sinks import check_sink, open_sink
from logferry.sinks.http import is_loopback
from logferry.sinks.influxdb import InfluxDBSink
from logferry.sinks.mezmo import MezmoSink
from logferry.testing.mezmo_server import MezmoServer
from tests.conftest import run_cli
from tests.sinks.conftest import KEY

ALLOW = SinkOptions(hostname="h", allow_insecure_http=True)


def _outward_address() -> str:
    """This host's address on its default route (no packet is sent), or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("no non-loopback interface")
        address = str(s.getsockname()[0])
    if is_loopback(address):
        pytest.skip("no non-loopback interface")
    return address


@pytest.fixture
def outward_server() -> Iterator[tuple[MezmoServer, str]]:
    """A Mezmo-compatible server reached through a non-loopback address."""
    address = _outward_address()
    with MezmoServer(ingestion_key=KEY, host="0.0.0.0") as server:
        yield server, f"mezmo+http://{address}:{server.port}/logs/ingest"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGDNA_INGESTION_KEY", KEY)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("::2", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_mezmo_plain_http_is_refused_off_loopback(outward_server: tuple[MezmoServer, str]) -> None:
    server, url = outward_server
    for call in (check_sink, open_sink):
        with pytest.raises(ConfigError) as err:
            call(url)
        message = str(err.value)
        assert "sends the ingestion key in cleartext" in message
        assert "mezmo+https://" in message and "--allow-insecure-http" in message
        assert KEY not in message
    with pytest.raises(ConfigError, match="cleartext"):
        MezmoSink(url, ingestion_key=KEY)
    assert server.requests == []  # refused before anything was sent


def test_mezmo_plain_http_with_the_option_delivers(
    outward_server: tuple[MezmoServer, str], make_batch: Callable[..., Batch]
) -> None:
    server, url = outward_server
    check_sink(url, ALLOW)
    sink = open_sink(url, ALLOW)
    try:
        sink.write(make_batch(3))
    finally:
        sink.close()
    assert len(server.lines) == 3


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_mezmo_plain_http_to_loopback_needs_no_option(
    host: str, server: MezmoServer, make_batch: Callable[..., Batch]
) -> None:
    url = f"mezmo+http://{host}:{server.port}/logs/ingest"
    check_sink(url)
    sink = open_sink(url, SinkOptions(hostname="h"))
    try:
        sink.write(make_batch(2))
    finally:
        sink.close()
    assert len(server.lines) == 2


def test_https_and_regions_are_untouched() -> None:
    check_sink("mezmo+https://logs.example.com/logs/ingest")
    check_sink("logdna:eu-de")


def test_logdna_endpoint_over_http_is_refused() -> None:
    (url,) = _default_sinks({"LOGDNA_ENDPOINT": "http://logs.example.com"})
    with pytest.raises(ConfigError, match="cleartext"):
        open_sink(url)
    (url,) = _default_sinks({"LOGDNA_ENDPOINT": "http://127.0.0.1:9"})
    open_sink(url).close()


def test_pipeline_sink_option(outward_server: tuple[MezmoServer, str], tmp_path: Path) -> None:
    _, url = outward_server
    text = textwrap.dedent(
        f"""
        sinks:
          mezmo: {{url: "{url}"}}
        sources:
          a: {{url: "{tmp_path}", sinks: [mezmo]}}
        """
    )
    with pytest.raises(ConfigError, match=r"sinks.mezmo.url: .*cleartext"):
        check_pipeline(parse_pipeline(text))
    allowed = text.replace(f'"{url}"}}', f'"{url}", allow_insecure_http: true}}')
    check_pipeline(parse_pipeline(allowed))


def test_ship_flag(outward_server: tuple[MezmoServer, str], tmp_path: Path) -> None:
    server, url = outward_server
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "a.log").write_text("one\ntwo\n")
    args = ("ship", str(bucket), "--to", url, "--ledger", str(tmp_path / "l.db"), "-q")
    env = {"LOGDNA_INGESTION_KEY": KEY}
    refused = run_cli(*args, env=env)
    assert refused.returncode == 2 and "--allow-insecure-http" in refused.stderr
    assert server.requests == []
    shipped = run_cli(*args, "--allow-insecure-http", env=env)
    assert shipped.returncode == 0, shipped.stderr
    assert [line["line"] for line in server.lines] == ["one", "two"]


# -- InfluxDB: the same rule when credentials are set -----------------------------------


def test_influx_plain_http_with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFLUXDB_USER", raising=False)
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    v1 = "influxdb+http://influx.example.com:8086/db"
    check_sink(v1)  # no credentials: nothing to leak
    monkeypatch.setenv("INFLUXDB_USER", "writer")
    monkeypatch.setenv("INFLUXDB_PASSWORD", "influx-password")
    with pytest.raises(ConfigError, match=r"sends the credentials in cleartext.*influxdb\+https"):
        check_sink(v1)
    with pytest.raises(ConfigError, match="cleartext") as err:
        InfluxDBSink(v1)
    assert "influx-password" not in str(err.value)
    check_sink(v1, ALLOW)
    open_sink(v1, ALLOW).close()
    check_sink("influxdb+http://127.0.0.1:8086/db")
    check_sink("influxdb+https://influx.example.com/db")

    monkeypatch.setenv("INFLUXDB_TOKEN", "influx-token")
    v2 = "influxdb2+http://influx.example.com:8086/org/bucket"
    with pytest.raises(ConfigError, match=r"influxdb2\+https"):
        open_sink(v2)
    open_sink(v2, ALLOW).close()
    open_sink("influxdb2+http://[::1]:8086/org/bucket").close()
