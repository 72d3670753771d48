"""Sinks, and the URL that picks one (through :mod:`logferry.registry`).

Every module of this package may declare a sink ``COMPONENT``; ``open_sink`` and
``check_sink`` are thin wrappers over the registry.
"""

from __future__ import annotations

import threading

from logferry import registry
from logferry.config import SinkOptions
from logferry.sinks.base import Sink
from logferry.sinks.files import ConcatSink, FileSink
from logferry.sinks.stdout import StdoutSink

__all__ = ["ConcatSink", "FileSink", "Sink", "StdoutSink", "check_sink", "open_sink"]


def check_sink(url: str, options: SinkOptions | None = None) -> None:
    """Validate a sink URL (and its options) without opening anything (``logferry validate``)."""
    registry.check(url, "sink", options or SinkOptions())


def open_sink(
    url: str, options: SinkOptions | None = None, *, stop: threading.Event | None = None
) -> Sink:
    """Open ``mezmo+https://…``, ``logdna:REGION``, ``file:///DIR``, ``-``, ``stdout:``, ….

    ``stop`` cuts retry waits short when a shutdown is requested.
    """
    sink = registry.open(url, "sink", options or SinkOptions(), stop=stop)
    assert isinstance(sink, Sink)
    return sink
