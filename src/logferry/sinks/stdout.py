"""JSON lines on standard output."""

from __future__ import annotations

import sys
import threading
from typing import BinaryIO

from logferry.records import Batch
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
