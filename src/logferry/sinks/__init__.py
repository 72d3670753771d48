"""Sinks, and the URL that picks one."""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

from logferry.config import SinkOptions
from logferry.errors import ConfigError
from logferry.sinks.base import Sink
from logferry.sinks.files import ConcatSink, FileSink
from logferry.sinks.stdout import StdoutSink

__all__ = ["ConcatSink", "FileSink", "Sink", "StdoutSink", "open_sink"]

MEZMO_SCHEMES = ("mezmo+https", "mezmo+http", "logdna+https", "logdna+http")
INFLUX_SCHEMES = ("influxdb+http", "influxdb+https", "influxdb2+http", "influxdb2+https")


def check_sink(url: str) -> None:
    """Validate a sink URL without opening anything (``logferry validate``)."""
    if url in ("-", "stdout:", "stdout://"):
        return
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in MEZMO_SCHEMES or scheme in ("logdna", "mezmo"):
        from logferry.sinks.mezmo import _ingestion_key, parse_mezmo_url

        parse_mezmo_url(url)
        _ingestion_key(None)
        return
    if scheme in INFLUX_SCHEMES:
        from logferry.sinks.influxdb import _credentials, parse_influx_url

        _credentials(parse_influx_url(url).version)
        return
    if scheme == "duckdb":
        from logferry.sinks.duckdb import parse_duckdb_url

        parse_duckdb_url(url)
        return
    if scheme == "file" or ("://" not in url and scheme not in ("http", "https")):
        return
    open_sink(url)  # raises the same "unknown sink" error


def open_sink(
    url: str, options: SinkOptions | None = None, *, stop: threading.Event | None = None
) -> Sink:
    """Open ``mezmo+https://…``, ``logdna:REGION``, ``file:///DIR``, ``-`` or ``stdout:``.

    ``stop`` cuts retry waits short when a shutdown is requested.
    """
    options = options or SinkOptions()
    if url in ("-", "stdout:", "stdout://"):
        return StdoutSink()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in MEZMO_SCHEMES or scheme in ("logdna", "mezmo"):
        from logferry.sinks.mezmo import MezmoSink

        return MezmoSink.from_url(
            url,
            app=options.app,
            hostname=options.hostname,
            tags=options.tags,
            max_line_bytes=options.max_line_bytes,
            verify=options.verify_tls,
        )
    if scheme in INFLUX_SCHEMES:
        from logferry.sinks.influxdb import InfluxDBSink

        return InfluxDBSink.from_url(url, verify=options.verify_tls)
    if scheme == "duckdb":
        from logferry.sinks.duckdb import DuckDBSink

        return DuckDBSink.from_url(url, stop_event=stop)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"bad file sink {url!r}: use file:///ABSOLUTE/DIR")
        return FileSink(unquote(parts.path))
    if "://" not in url and scheme not in ("http", "https"):
        return FileSink(url)
    raise ConfigError(
        f"unknown sink {url!r}: use mezmo+https://HOST/logs/ingest, logdna:REGION, "
        "influxdb+http://HOST:8086/DB, influxdb2+http://HOST:8086/ORG/BUCKET, duckdb:///PATH, "
        "file:///DIR, a directory path, or - for stdout"
    )
