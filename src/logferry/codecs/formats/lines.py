"""``lines``: one record per line, stamped with the object's last-modified time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from logferry.codecs.formats.base import DecodeContext, Format
from logferry.codecs.framing import iter_lines
from logferry.records import Chunk


class LinesFormat(Format):
    """Plain text: every non-blank line is a record; no fields."""

    name = "lines"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk of lines per decompressed chunk."""
        ts = ctx.last_modified_ms
        for lines in iter_lines(chunks, ctx.options.max_line_bytes, ctx.counters):
            yield Chunk(lines, [ts] * len(lines), None)
