"""JSON lines on standard output."""

from __future__ import annotations

import sys
import threading
from typing import BinaryIO

from logferry.errors import ConfigError
from logferry.records import Batch
from logferry.redact import redact_url
from logferry.registry import Component, NoOptions
from logferry.sinks.base import Sink
from logferry.sinks.files import encode_jsonl


class StdoutSink(Sink):
    """Write ``{"timestamp", "key", "line"}`` JSON lines to stdout."""

    name = "stdout:"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, batch: Batch) -> None:
        """Write and flush; the flush is the acknowledgement."""
        data = encode_jsonl(batch, with_key=True)
        stream = self._stream or sys.stdout.buffer
        with self._lock:
            stream.write(data)
            stream.flush()


def _check(url: str, options: NoOptions) -> None:
    if url.strip() not in ("-", "stdout:", "stdout://"):
        raise ConfigError(f"bad stdout sink {redact_url(url)!r}: use - or stdout:")


def _open(url: str, options: NoOptions, *, stop: threading.Event | None = None) -> StdoutSink:
    _check(url, options)
    return StdoutSink()


COMPONENT = Component(
    name="stdout",
    kind="sink",
    schemes=("stdout", "-"),
    options=NoOptions,
    check=_check,
    open=_open,
    usage="- or stdout:",
    summary="JSON lines on standard output",
)
