"""JSON lines on standard output."""

from __future__ import annotations

import os
import sys
import threading
from typing import BinaryIO

from logferry.errors import ConfigError, RetryableSinkError
from logferry.records import Batch
from logferry.redact import redact_url
from logferry.registry import Component, NoOptions
from logferry.sinks.base import Sink
from logferry.sinks.files import encode_jsonl

#: Set once the reader of standard output went away (``| head``): the run stops quietly.
OUTPUT_CLOSED = threading.Event()


class StdoutSink(Sink):
    """Write ``{"timestamp", "key", "line"}`` JSON lines to stdout.

    When the reader closes the pipe, the batch is not acknowledged (the ledger keeps its
    position), ``stop`` is set and :data:`OUTPUT_CLOSED` tells the CLI to exit quietly.
    """

    name = "stdout:"

    def __init__(self, stream: BinaryIO | None = None, stop: threading.Event | None = None) -> None:
        self._stream = stream
        self._stop = stop
        self._lock = threading.Lock()

    def write(self, batch: Batch) -> None:
        """Write and flush; the flush is the acknowledgement."""
        data = encode_jsonl(batch, with_key=True)
        stream = self._stream or sys.stdout.buffer
        with self._lock:
            if OUTPUT_CLOSED.is_set():
                raise RetryableSinkError("standard output is closed")
            try:
                stream.write(data)
                stream.flush()
            except BrokenPipeError:
                self._closed(stream)
                raise RetryableSinkError("standard output is closed") from None

    def _closed(self, stream: BinaryIO) -> None:
        OUTPUT_CLOSED.set()
        if self._stop is not None:
            self._stop.set()
        if stream is sys.stdout.buffer:
            # What is still buffered can never be written: point stdout at /dev/null so
            # the interpreter's flush at exit does not complain about the pipe.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _check(url: str, options: NoOptions) -> None:
    if url.strip() not in ("-", "stdout:", "stdout://"):
        raise ConfigError(f"bad stdout sink {redact_url(url)!r}: use - or stdout:")


def _open(url: str, options: NoOptions, *, stop: threading.Event | None = None) -> StdoutSink:
    _check(url, options)
    return StdoutSink(stop=stop)


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
