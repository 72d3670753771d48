"""Framing: where one record ends. Newline-delimited lines, or one whole document.

Content is untrusted: a line never grows past ``max_line_bytes`` in memory (its head is kept,
the rest skipped up to the next newline and counted in ``counters["truncated_lines"]``), and
a block never holds more than :data:`MAX_BLOCK_LINES` lines, so neither a line without a
newline nor a flood of empty lines costs more than a bounded amount per block.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

from logferry.errors import DecodeError

_BOM_BYTES = "\ufeff".encode()

#: Longest line kept whole by default; the sinks apply their own, smaller, limits.
DEFAULT_MAX_LINE_BYTES = 1 << 20
#: Most lines in one block: a block of tiny (or empty) lines stays small once split into str.
MAX_BLOCK_LINES = 65536


def iter_lines(
    chunks: Iterable[bytes],
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    counters: collections.Counter[str] | None = None,
) -> Iterator[list[str]]:
    """Yield the complete, non-blank lines (LF or CRLF) of each chunk, decoded as UTF-8.

    Invalid UTF-8 is replaced, never fatal. A chunk that completes no line yields nothing;
    a last line without a trailing newline is still a line. Lines are capped as
    :func:`iter_line_blocks` says, and a list holds at most :data:`MAX_BLOCK_LINES` lines.
    """
    for data in _whole_lines(chunks, max_line_bytes, counters):
        if _newlines_only(data):
            continue
        # Cutting at b"\n" never splits a UTF-8 sequence, so one decode per block is safe.
        text = data.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        # maxsplit bounds the list without counting the lines first (a pass less).
        lines = text.split("\n", MAX_BLOCK_LINES)
        if lines.pop():
            # More lines than a list may hold (tiny lines): cut the bytes by count instead.
            for block in _split_by_count(data, MAX_BLOCK_LINES):
                lines = [] if _newlines_only(block) else block_lines(block)
                if lines:
                    yield lines
            continue
        if not all(lines):
            lines = list(filter(None, lines))  # blank lines
        if lines:
            yield lines


def _newlines_only(block: bytes) -> bool:
    """Whether a block is empty lines only (a flood of them is skipped without a split)."""
    return block.startswith(b"\n") and block.count(b"\n") == len(block)


def iter_line_blocks(
    chunks: Iterable[bytes],
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    counters: collections.Counter[str] | None = None,
) -> Iterator[bytes]:
    """Yield the bytes of whole lines, each block ending in ``\n``, at most one per chunk.

    A leading UTF-8 byte order mark is dropped, and a last line without a trailing newline
    gets one. A line longer than ``max_line_bytes`` keeps its first ``max_line_bytes`` bytes
    and a `` …[truncated N bytes]`` marker; ``counters["truncated_lines"]`` counts them.
    Blocks hold at most :data:`MAX_BLOCK_LINES` lines. Formats that parse bytes directly
    (vectorised) start here; :func:`block_lines` turns a block into the lines of
    :func:`iter_lines`.
    """
    for data in _whole_lines(chunks, max_line_bytes, counters):
        yield from _split_by_count(data, MAX_BLOCK_LINES)


def _whole_lines(
    chunks: Iterable[bytes], max_line_bytes: int, counters: collections.Counter[str] | None
) -> Iterator[bytes]:
    """The whole lines completed by each chunk, capped, as one block (any number of lines)."""
    pending = _PendingLine(max_line_bytes)  # the line being read, across chunks
    truncated = 0
    first = True
    for chunk in chunks:
        cut = chunk.rfind(b"\n")
        if cut < 0:
            pending.add(chunk)
            continue
        newline = chunk.find(b"\n")
        if pending.size:
            pending.add(chunk[:newline])
            head = pending.take()
            if pending.truncated:
                truncated += 1
            rest, capped = _cap_long_lines(chunk[newline : cut + 1], max_line_bytes)
            data = head + rest
        else:
            data, capped = _cap_long_lines(chunk[: cut + 1], max_line_bytes)
        truncated += capped
        pending.reset()
        if cut + 1 < len(chunk):
            pending.add(chunk[cut + 1 :])
        if first:
            data = data.removeprefix(_BOM_BYTES)
            first = False
        if data:
            yield data
        if truncated and counters is not None:
            counters["truncated_lines"] += truncated
        truncated = 0
    if pending.size:
        data = pending.take()
        if pending.truncated and counters is not None:
            counters["truncated_lines"] += 1
        if first:
            data = data.removeprefix(_BOM_BYTES)
        if data:
            yield data + b"\n"


class _PendingLine:
    """The start of a line not ended yet: at most ``limit`` bytes kept, the rest counted."""

    __slots__ = ("limit", "parts", "size", "truncated")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []  # kept as parts to avoid O(n^2) joins
        self.size = 0  # bytes seen, kept or not
        self.truncated = False

    def add(self, data: bytes) -> None:
        """Append ``data`` to the line, keeping no more than ``limit`` bytes of it."""
        if not data:
            return
        room = self.limit - self.size
        if room >= len(data):
            self.parts.append(data)
        elif room > 0:
            self.parts.append(data[:room])
        self.size += len(data)

    def take(self) -> bytes:
        """The line's kept bytes (with the truncation marker if it was too long)."""
        data = b"".join(self.parts)
        self.truncated = self.size > self.limit
        if self.truncated:
            data += _marker(self.size - self.limit)
        return data

    def reset(self) -> None:
        """Start the next line."""
        self.parts.clear()
        self.size = 0
        self.truncated = False


def _marker(dropped: int) -> bytes:
    return f" …[truncated {dropped} bytes]".encode()


def _cap_long_lines(block: bytes, limit: int) -> tuple[bytes, int]:
    """``block`` (whole lines) with every line over ``limit`` bytes cut, and how many were.

    Looks for a newline in every window of ``limit // 2`` bytes: a line over ``limit``
    bytes covers a whole window, so blocks of ordinary lines cost a few ``find`` calls.
    """
    if len(block) <= limit:
        return block, 0
    half = max(limit // 2, 1)
    parts: list[bytes] = []
    done = 0  # block[:done] is in parts
    at = 0
    end = len(block)
    while at < end:
        if block.find(b"\n", at, at + half) >= 0:
            at += half
            continue
        start = block.rfind(b"\n", 0, at) + 1
        stop = block.find(b"\n", at)  # the block ends in a newline
        if stop - start > limit:
            parts.append(block[done : start + limit])
            parts.append(_marker(stop - start - limit))
            done = stop
        at = stop + 1
    if not parts:
        return block, 0
    parts.append(block[done:])
    return b"".join(parts), len(parts) // 2


def _split_by_count(block: bytes, limit: int) -> Iterator[bytes]:
    """Cut a block of whole lines into blocks of at most ``limit`` lines."""
    count = block.count(b"\n")
    if count <= limit:
        if block:
            yield block
        return
    step = max(1, len(block) * limit // count)  # bytes per block if lines were even
    at = 0
    end = len(block)
    while at < end:
        stop = block.rfind(b"\n", at, at + step) + 1
        if stop <= at:
            stop = block.find(b"\n", at) + 1
        part = block[at:stop]
        if part.count(b"\n") > limit:
            yield from _split_by_count(part, limit)
        else:
            yield part
        at = stop


def block_lines(block: bytes) -> list[str]:
    """The non-blank lines of a block of whole lines, decoded as UTF-8 (invalid replaced)."""
    # Cutting at b"\n" never splits a UTF-8 sequence, so one decode per block is safe.
    text = block.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return list(filter(None, text.split("\n")))


def read_document(chunks: Iterable[bytes], limit: int) -> bytes:
    """Concatenate a whole document, refusing one larger than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise DecodeError(
                f"document larger than {limit} bytes; raise max_document_bytes or, if the "
                "object holds one JSON value per line, use the ndjson format"
            )
        parts.append(chunk)
    return b"".join(parts)


def peek(chunks: Iterable[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """Return the first up-to-``size`` bytes and an iterator that still yields every chunk."""
    source = iter(chunks)
    taken: list[bytes] = []
    have = 0
    for chunk in source:
        taken.append(chunk)
        have += len(chunk)
        if have >= size:
            break
    head = b"".join(taken)
    return head[:size], _chain(head, source)


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest
