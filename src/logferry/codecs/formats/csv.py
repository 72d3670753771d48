"""``csv``: comma-separated values with a header row; one record per data row.

Read with the :mod:`csv` module over a stream of physical lines, so quoted fields may hold
commas and newlines and the object is never held whole; a physical line is capped at
``max_line_bytes`` as framing caps lines. The line shipped is the row's text
as written; ``fields`` maps the header's names to the row's values.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DOCUMENT_CHUNK_RECORDS, NO_FIELDS, DecodeContext, Format
from logferry.codecs.framing import iter_line_blocks
from logferry.codecs.timestamps import parse_timestamp
from logferry.records import Chunk

#: Tried after ``options.timestamp_fields``.
EXTRA_TIME_COLUMNS = ("time", "date", "datetime")


class CsvFormat(Format):
    """Rows with the wrong number of values, or broken quoting, are shipped raw and counted."""

    name = "csv"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield chunks of at most DOCUMENT_CHUNK_RECORDS rows."""
        consumed: list[str] = []  # physical lines the reader took for the current row
        reader = csv.reader(_physical_lines(chunks, consumed, ctx))
        default = ctx.last_modified_ms
        header: list[str] | None = None
        column = -1
        lines: list[str] = []
        timestamps: list[int] = []
        fields: list[dict[str, Any]] = []
        malformed = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                # Broken quoting (e.g. a quote never closed): ship what the reader swallowed
                # line by line, so one bad quote costs its own lines only.
                for line in consumed:
                    text = line.rstrip("\r\n")
                    if text:
                        malformed += 1
                        lines.append(text)
                        timestamps.append(default)
                        fields.append(NO_FIELDS)
                consumed.clear()
                continue
            text = (consumed[0] if len(consumed) == 1 else "".join(consumed)).rstrip("\r\n")
            consumed.clear()
            if not row:
                continue  # blank line
            if header is None:
                header = row
                column = _time_column(header, ctx.options.timestamp_fields)
                continue
            if len(row) != len(header):
                malformed += 1
                lines.append(text)
                timestamps.append(default)
                fields.append(NO_FIELDS)
            else:
                lines.append(text)
                ts = parse_timestamp(row[column]) if column >= 0 and row[column] else None
                timestamps.append(default if ts is None else ts)
                fields.append(dict(zip(header, row, strict=True)))
            if len(lines) >= DOCUMENT_CHUNK_RECORDS:
                yield Chunk(lines, timestamps, fields)
                lines, timestamps, fields = [], [], []
        if malformed:
            ctx.counters["malformed"] += malformed
        if lines:
            yield Chunk(lines, timestamps, fields)


def _time_column(header: list[str], names: Iterable[str]) -> int:
    """Index of the first timestamp column present in ``header``, or -1."""
    for name in (*names, *EXTRA_TIME_COLUMNS):
        if name in header:
            return header.index(name)
    return -1


def _physical_lines(
    chunks: Iterable[bytes], consumed: list[str], ctx: DecodeContext
) -> Iterator[str]:
    """Yield UTF-8 text line by line (ends kept), noting each in ``consumed``.

    Lines are framed as :func:`~logferry.codecs.framing.iter_line_blocks` frames them: one
    longer than ``max_line_bytes`` keeps its head and is counted in ``truncated_lines``.
    """
    for block in iter_line_blocks(chunks, ctx.options.max_line_bytes, ctx.counters):
        # Blocks end in "\n", and cutting at b"\n" never splits a UTF-8 sequence.
        parts = block.decode("utf-8", "replace").split("\n")
        parts.pop()
        for part in parts:
            line = part + "\n"
            consumed.append(line)
            yield line
