"""Framing: where one record ends. Newline-delimited lines, or one whole document."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from logferry.errors import DecodeError

_BOM_BYTES = "\ufeff".encode()


def iter_lines(chunks: Iterable[bytes]) -> Iterator[list[str]]:
    """Yield the complete, non-blank lines (LF or CRLF) of each chunk, decoded as UTF-8.

    Invalid UTF-8 is replaced, never fatal. A chunk that completes no line yields nothing;
    a last line without a trailing newline is still a line.
    """
    for block in iter_line_blocks(chunks):
        lines = block_lines(block)
        if lines:
            yield lines


def iter_line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the bytes of whole lines, each block ending in ``\n``, one per chunk.

    A leading UTF-8 byte order mark is dropped, and a last line without a trailing newline
    gets one. Formats that parse bytes directly (vectorised) start here; :func:`block_lines`
    turns a block into the lines :func:`iter_lines` yields.
    """
    pending: list[bytes] = []  # bytes after the last newline, kept as parts to avoid O(n^2)
    first = True
    for chunk in chunks:
        cut = chunk.rfind(b"\n")
        if cut < 0:
            if chunk:
                pending.append(chunk)
            continue
        if pending:
            pending.append(chunk[: cut + 1])
            data = b"".join(pending)
            pending.clear()
        else:
            data = chunk[: cut + 1]
        if cut + 1 < len(chunk):
            pending.append(chunk[cut + 1 :])
        if first:
            data = data.removeprefix(_BOM_BYTES)
            first = False
        yield data
    if pending:
        data = b"".join(pending)
        if first:
            data = data.removeprefix(_BOM_BYTES)
        if data:
            yield data + b"\n"


def block_lines(block: bytes) -> list[str]:
    """The non-blank lines of a block of whole lines, decoded as UTF-8 (invalid replaced)."""
    # Cutting at b"\n" never splits a UTF-8 sequence, so one decode per block is safe.
    text = block.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return [line for line in text.split("\n") if line]


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
