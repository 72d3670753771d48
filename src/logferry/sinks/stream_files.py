"""Stream partitions to files in a layout of the caller's, one line per record.

The :class:`~logferry.sinks.files.FileSink` stream mode with two things swapped: the path
of a partition (``layout``, e.g. CloudWatch's ``GROUP/STREAM.HASH.log``) and how records
are written (``encode``, which must write exactly one line per record). One line per record
is what makes a resume exact without a position in each line: reopened at ``resume_at``
acknowledged records, the file is cut back to its first ``resume_at`` lines, so a rerun
after ``kill -9`` neither repeats nor skips a line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from logferry.errors import RetryableSinkError
from logferry.records import Batch
from logferry.sinks.files import FileSink


class StreamFileSink(FileSink):
    """Each stream partition in its own file at ``DIR/layout(key)``; lines fsynced per batch."""

    def __init__(
        self,
        directory: str | Path,
        *,
        layout: Callable[[str], str],
        encode: Callable[[Batch], bytes],
        fsync: bool = True,
    ) -> None:
        super().__init__(directory, raw=True)
        self.layout = layout
        self.encode = encode
        self.fsync = fsync

    def stream_path_for(self, key: str, version: str) -> Path:
        """The partition's file; a new version (a stream re-created) starts it over."""
        return self.dir / self.layout(key)

    def encode_stream(self, batch: Batch) -> bytes:
        """One line per record, as ``encode`` writes them."""
        return self.encode(batch)

    def stream_offset(self, f: IO[bytes], position: int) -> int:
        """Just after the first ``position`` lines (a shorter file: after its last whole line)."""
        offset = whole = 0
        left = position
        while left and (block := f.read(1 << 20)):
            n = block.count(b"\n")
            if n >= left:
                pos = -1
                for _ in range(left):
                    pos = block.find(b"\n", pos + 1)
                return offset + pos + 1
            left -= n
            if n:
                whole = offset + block.rfind(b"\n") + 1
            offset += len(block)
        # Fewer lines than acknowledged (the file was edited): go on from its last whole line.
        return whole if left else 0

    def write(self, batch: Batch) -> None:
        """Append the batch; with ``fsync``, it is on disk before the ledger says so.

        A full or failing disk is retried (and holds the stream), never skipped: a file
        with a gap in it could not be resumed by cutting it back.
        """
        try:
            super().write(batch)
            f = self._open.get((batch.source, batch.key))
            if self.fsync and f is not None:
                os.fsync(f.fileno())
        except OSError as exc:
            raise RetryableSinkError(f"{self.name}: {exc.strerror or exc}") from None
