"""The library entry point: ``logferry.ship(...)`` does what ``logferry ship`` does."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Literal

import orjson

from logferry.config import MiB, ShipOptions, SinkOptions, build
from logferry.errors import ConfigError
from logferry.ledger import Ledger, open_ledger
from logferry.runner import Progress, Runner, ShipResult
from logferry.sinks import Sink, open_sink
from logferry.sources import (
    BucketSource,
    StreamSource,
    is_stream_url,
    open_source,
    open_stream_source,
)
from logferry.stream_runner import StreamRunner


def to_json_line(value: object) -> str:
    """One compact JSON line (the summaries' format)."""
    return orjson.dumps(value).decode()


def ship(
    source: str | BucketSource | StreamSource,
    to: str | Sink | Sequence[str | Sink],
    *,
    format: str = "auto",
    key: str | Sequence[str] | None = None,
    latest: int | None = None,
    all: bool = False,
    ledger: str | Ledger | None = None,
    endpoint_url: str | None = None,
    expand: str | None = None,
    timestamp_fields: Sequence[str] | None = None,
    syslog_timezone: str = "UTC",
    app: str = "logferry",
    hostname: str | None = None,
    tags: str | None = None,
    max_line_bytes: int = 32 * 1024,
    verify_tls: bool = True,
    allow_insecure_http: bool = False,
    workers: int = 4,
    batch_bytes: int = 2 * MiB,
    max_attempts: int = 5,
    retry_delay: float = 2.0,
    follow: bool = False,
    start: Literal["beginning", "end"] = "beginning",
    batch_lines: int = 10_000,
    batch_wait: float = 1.0,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ShipResult:
    """Ship the objects of ``source`` to every sink in ``to``; see ``logferry ship --help``.

    Modes: catchup (default), ``key=`` one object (or several), ``latest=N``, ``all=True``
    (re-send). Catchup leaves alone objects that failed ``max_attempts`` times: ``drain`` them.
    Stream sources (``tail:///GLOB``, ``cloudwatch://GROUP``) are read to their current end,
    or followed until ``stop`` is set with ``follow=True``; ``start`` is where a tail begins.
    Raises ``ConfigError`` for bad arguments; per-object failures are in the result.
    """
    if sum(map(bool, (key, latest, all))) > 1:
        raise ConfigError("--key, --latest and --all are exclusive: pick one")
    mode = "key" if key else "latest" if latest else "all" if all else "catchup"
    extra = {"timestamp_fields": tuple(timestamp_fields)} if timestamp_fields else {}
    options = build(
        ShipOptions,
        mode=mode,
        keys=(key,) if isinstance(key, str) else tuple(key or ()),
        latest=latest,
        format=format,
        expand=expand,
        workers=workers,
        batch_bytes=batch_bytes,
        batch_lines=batch_lines,
        batch_wait=batch_wait,
        force=all,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        syslog_timezone=syslog_timezone,
        **extra,
    )
    sink_options = build(
        SinkOptions,
        app=app,
        hostname=hostname,
        tags=tags,
        max_line_bytes=max_line_bytes,
        verify_tls=verify_tls,
        allow_insecure_http=allow_insecure_http,
    )
    assert isinstance(options, ShipOptions) and isinstance(sink_options, SinkOptions)
    stop = stop or threading.Event()
    with contextlib.ExitStack() as cleanup:
        if isinstance(source, str):
            if is_stream_url(source):
                if key or latest or all:
                    raise ConfigError("--key, --latest and --all apply to buckets, not streams")
                source = open_stream_source(
                    source,
                    endpoint_url=endpoint_url,
                    start=start,
                    format=format,
                    format_options=Runner.format_options_of(options),
                )
            else:
                source = open_source(source, endpoint_url=endpoint_url, verify=verify_tls)
            cleanup.callback(source.close)
        sinks: list[Sink] = []
        for target in [to] if isinstance(to, (str, Sink)) else to:
            sink = open_sink(target, sink_options, stop=stop) if isinstance(target, str) else target
            cleanup.callback(sink.close)
            sinks.append(sink)
        if not isinstance(ledger, Ledger):
            ledger = open_ledger(ledger)
            cleanup.callback(ledger.close)
        if isinstance(source, StreamSource):
            return StreamRunner(
                source, sinks, ledger, options, follow=follow, progress=progress, stop=stop
            ).run()
        return Runner(source, sinks, ledger, options, progress=progress, stop=stop).run()
    raise AssertionError("unreachable")  # pragma: no cover - keeps mypy's return analysis happy
