"""Codecs: bytes of an object into records, in three steps.

compression (magic bytes) → framing (lines or whole documents) → format (what a record
means). :func:`decode_object` runs all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from logferry.codecs.compression import decompress
from logferry.codecs.formats import (
    FORMATS,
    DecodeContext,
    Format,
    FormatOptions,
    detect_format,
    get_format,
    resolve_format,
)
from logferry.codecs.framing import peek
from logferry.records import Chunk


def decode_object(
    raw_chunks: Iterable[bytes], ctx: DecodeContext, format_name: str = "auto"
) -> Iterator[Chunk]:
    """Decompress and decode one object's raw bytes into runs of records.

    An unknown ``format_name`` raises ConfigError at once; the format used (the one "auto"
    picked) is in ``ctx.format_name`` once the first chunk is produced (or the data ends).
    """
    fmt = get_format(format_name)
    return _decode(fmt, raw_chunks, ctx, format_name)


def _decode(
    fmt: Format, raw_chunks: Iterable[bytes], ctx: DecodeContext, format_name: str
) -> Iterator[Chunk]:
    if format_name != "auto":
        ctx.format_name = format_name
    options = ctx.options
    data = decompress(
        raw_chunks,
        max_bytes=options.max_decompressed_bytes,
        max_ratio=options.max_decompression_ratio,
        max_window=options.max_zstd_window,
    )
    # An empty object (or one that decompresses to nothing) ships nothing and is done,
    # whatever its format: a document format must not call it a broken document.
    head, data = peek(data, 1)
    if not head:
        return
    yield from fmt.decode(data, ctx)


__all__ = [
    "FORMATS",
    "DecodeContext",
    "Format",
    "FormatOptions",
    "decode_object",
    "decompress",
    "detect_format",
    "get_format",
    "resolve_format",
]
