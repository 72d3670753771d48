"""The library entry points: ``ship`` does what ``logferry ship`` does, ``drain`` what
``logferry drain`` does. Both take typed options (:class:`ShipOptions`, :class:`SinkOptions`).

    from logferry import ShipOptions, ship
    result = ship("s3://bucket/prefix", "mezmo+https://…", ShipOptions(workers=8))
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

import orjson

from logferry.config import ShipOptions, SinkOptions
from logferry.engine import (
    ObjectRunner,
    Progress,
    Router,
    ShipResult,
    StreamRunner,
    follow_bucket,
)
from logferry.engine.drain import DrainResult, drain_errors
from logferry.errors import ConfigError
from logferry.ledger import Ledger, open_ledger
from logferry.sinks import Sink, open_sink
from logferry.sources import (
    BucketSource,
    StreamSource,
    is_stream_url,
    open_source,
    open_stream_source,
)

__all__ = ["DrainResult", "drain", "open_sinks", "ship", "to_json_line"]


def to_json_line(value: object) -> str:
    """One compact JSON line (the summaries' format)."""
    return orjson.dumps(value).decode()


def open_sinks(
    to: str | Sink | Sequence[str | Sink],
    sink_options: SinkOptions | None,
    stop: threading.Event,
    cleanup: contextlib.ExitStack,
) -> list[Sink]:
    """Open the sink URLs in ``to`` (sinks given as objects are used as they are)."""
    sinks: list[Sink] = []
    for target in [to] if isinstance(to, (str, Sink)) else to:
        if isinstance(target, str):
            sink = open_sink(target, sink_options, stop=stop)
            cleanup.callback(sink.close)
        else:
            sink = target
        sinks.append(sink)
    if not sinks:
        raise ConfigError("no sink given: add --to SINK")
    return sinks


def _ledger(ledger: str | Ledger | None, cleanup: contextlib.ExitStack) -> Ledger:
    if isinstance(ledger, Ledger):
        return ledger
    opened = open_ledger(ledger)
    cleanup.callback(opened.close)
    return opened


def ship(
    source: str | BucketSource | StreamSource,
    to: str | Sink | Sequence[str | Sink],
    options: ShipOptions | None = None,
    *,
    sink_options: SinkOptions | None = None,
    ledger: str | Ledger | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_cycle: Callable[[ShipResult], None] | None = None,
) -> ShipResult:
    """Ship ``source`` to every sink in ``to``; see ``logferry ship --help``.

    Buckets ship per ``options.mode`` (catchup, key, latest, all); with ``options.follow``
    they are caught up every ``options.interval`` seconds until ``stop`` is set, and
    ``on_cycle`` gets each cycle's result. Stream sources (``tail:///GLOB``,
    ``cloudwatch://GROUP``) are read to their current end, or followed until ``stop`` is set
    with ``options.follow``. ``profile`` and ``region`` reach the sources that call AWS.
    Raises ``ConfigError`` for bad arguments; per-object failures are in the result.
    """
    options = options or ShipOptions()
    stop = stop or threading.Event()
    with contextlib.ExitStack() as cleanup:
        if isinstance(source, str):
            if is_stream_url(source):
                if options.mode != "catchup":
                    raise ConfigError("--key, --latest and --all apply to buckets, not streams")
                if options.since is not None or options.until is not None:
                    raise ConfigError("--since and --until apply to buckets, not streams")
                source = open_stream_source(
                    source,
                    endpoint_url=endpoint_url,
                    start=options.start,
                    profile=profile,
                    region=region,
                )
            else:
                verify = sink_options.verify_tls if sink_options else True
                source = open_source(
                    source, endpoint_url=endpoint_url, verify=verify, profile=profile,
                    region=region,
                )  # fmt: skip
            cleanup.callback(source.close)
        router = Router.to_all(open_sinks(to, sink_options, stop, cleanup), options.format)
        led = _ledger(ledger, cleanup)
        if isinstance(source, StreamSource):
            return StreamRunner(source, router, led, options, progress=progress,
                                stop=stop).run()  # fmt: skip
        if options.follow:
            if options.mode != "catchup":
                raise ConfigError("--follow catches up a bucket: drop --key, --latest and --all")
            return follow_bucket(source, router, led, options, progress=progress, stop=stop,
                                 on_cycle=on_cycle)  # fmt: skip
        return ObjectRunner(source, router, led, options, progress=progress, stop=stop).run()
    raise AssertionError("unreachable")  # pragma: no cover - keeps mypy's return analysis happy


def drain(
    to: str | Sink | Sequence[str | Sink],
    *,
    ledger: str | Ledger | None = None,
    ids: Sequence[str] | None = None,
    source: str | None = None,
    options: ShipOptions | None = None,
    sink_options: SinkOptions | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> DrainResult:
    """Retry the error queue into ``to``: objects are shipped again from their source, dead
    letters delivered from the ledger; only what is acknowledged leaves the queue.

    ``ids`` picks entries (``12`` an object, ``D3`` a dead letter); ``source`` one source.
    """
    stop = stop or threading.Event()
    with contextlib.ExitStack() as cleanup:
        sinks = open_sinks(to, sink_options, stop, cleanup)
        return drain_errors(
            _ledger(ledger, cleanup),
            sinks,
            ids=ids,
            source=source,
            options=options or ShipOptions(),
            endpoint_url=endpoint_url,
            profile=profile,
            region=region,
            progress=progress,
            stop=stop,
        )
    raise AssertionError("unreachable")  # pragma: no cover
