"""The library entry point: ``logferry.ship(...)`` does what ``logferry ship`` does."""

from __future__ import annotations

import threading

from logferry.config import MiB, ShipOptions, SinkOptions, build
from logferry.errors import ConfigError
from logferry.ledger import Ledger, open_ledger
from logferry.runner import Progress, Runner, ShipResult
from logferry.sinks import Sink, open_sink
from logferry.sources import BucketSource, open_source


def ship(
    source: str | BucketSource,
    to: str | Sink | list[str | Sink],
    *,
    format: str = "auto",
    key: str | None = None,
    latest: int | None = None,
    all: bool = False,
    ledger: str | Ledger | None = None,
    endpoint_url: str | None = None,
    expand: str | None = None,
    app: str = "logferry",
    hostname: str | None = None,
    tags: str | None = None,
    workers: int = 4,
    batch_bytes: int = 2 * MiB,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ShipResult:
    """Ship the objects of ``source`` to every sink in ``to``; see ``logferry ship --help``.

    Modes: catchup (default), ``key=`` one object, ``latest=N``, ``all=True`` (re-send).
    Raises ``ConfigError`` for bad arguments; per-object failures are in the result.
    """
    if sum(map(bool, (key, latest, all))) > 1:
        raise ConfigError("key, latest and all are exclusive: pick one")
    mode = "key" if key else "latest" if latest else "all" if all else "catchup"
    options = build(
        ShipOptions,
        mode=mode,
        key=key,
        latest=latest,
        format=format,
        expand=expand,
        workers=workers,
        batch_bytes=batch_bytes,
        force=all,
    )
    sink_options = build(SinkOptions, app=app, hostname=hostname, tags=tags)
    assert isinstance(options, ShipOptions) and isinstance(sink_options, SinkOptions)
    src = open_source(source, endpoint_url=endpoint_url) if isinstance(source, str) else source
    targets = to if isinstance(to, list) else [to]
    stop = stop or threading.Event()
    sinks = [open_sink(t, sink_options, stop=stop) if isinstance(t, str) else t for t in targets]
    led = open_ledger(ledger) if ledger is None or isinstance(ledger, str) else ledger
    try:
        return Runner(src, sinks, led, options, progress=progress, stop=stop).run()
    finally:
        for sink in sinks:
            sink.close()
        if not isinstance(ledger, Ledger):
            led.close()
        if isinstance(source, str):
            src.close()
