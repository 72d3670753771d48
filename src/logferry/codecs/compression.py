"""Compression: detect gzip / zstd / bz2 from magic bytes and stream-decompress.

Output comes in bounded pieces (at most :data:`PIECE_SIZE` bytes), so a small
"bomb" chunk never expands into one giant buffer. A stream that is corrupt or
ends mid-member raises :class:`~logferry.errors.DecodeError` with a one-line reason,
and so does one that expands past the limits given to :func:`decompress`.
"""

from __future__ import annotations

import bz2
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

import zstandard

from logferry.errors import DecodeError

_isal_zlib: Any
try:
    # ISA-L (the ``fast`` extra) inflates gzip about 3x faster than zlib (36 against 105 ms
    # for 100 MB of NDJSON) and releases the GIL while it does.
    from isal import isal_zlib as _isal_zlib
except ImportError:  # optional: zlib does the same job, slower
    _isal_zlib = None

#: Largest decompressed piece yielded at once.
PIECE_SIZE = 1 << 20
#: Small outputs (from small compressed reads) are joined up to this size, so the
#: formats downstream see few large pieces instead of many tiny ones.
_MIN_PIECE = 256 << 10

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZ2_MAGIC = b"BZh"
_MAGIC_LEN = 4

#: The ratio limit applies once this much has come out: small objects may expand freely.
RATIO_FLOOR = 64 << 20
#: Default largest zstd window: what ``zstd --long=31`` (the most the CLI makes) needs.
MAX_ZSTD_WINDOW = 1 << 31
#: Compressed bytes handed to zstd at once; small, so the ratio is measured closely.
_ZSTD_READ = 16 << 10


def detect(head: bytes) -> str:
    """Name the compression of a stream from its first bytes: gzip, zstd, bz2 or none."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    # "BZh" plus a block-size digit: plain text starting with "BZh" stays text.
    if head.startswith(_BZ2_MAGIC) and (len(head) == 3 or head[3:4] in b"123456789"):
        return "bz2"
    return "none"


def decompress(
    chunks: Iterable[bytes],
    max_bytes: int = 0,
    max_ratio: int = 0,
    max_window: int = MAX_ZSTD_WINDOW,
) -> Iterator[bytes]:
    """Decompress a stream of byte chunks, detecting the compression from its magic bytes.

    Fails with DecodeError when the output passes ``max_bytes``, or ``max_ratio`` times the
    compressed bytes read once past :data:`RATIO_FLOOR` (0 turns either off), or when a zstd
    frame needs a window larger than ``max_window``.
    """
    source = iter(chunks)
    head = b""
    # The first chunk may be shorter than the magic: buffer until we can tell.
    for chunk in source:
        head += chunk
        if len(head) >= _MAGIC_LEN:
            break
    kind = detect(head)
    if kind == "none":
        if head:
            yield head
        yield from (chunk for chunk in source if chunk)
        return
    stream = _Counted(_prepend(head, source))
    pieces = _zstd(stream, max_window) if kind == "zstd" else _members(stream, kind)
    if max_bytes or max_ratio:
        pieces = _limited(pieces, stream, kind, max_bytes, max_ratio)
    yield from _coalesce(pieces)


class _Counted:
    """An iterator of compressed chunks that counts the bytes taken from it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        #: Bytes handed out so far; the decompressors hold at most a read's worth unused.
        self.taken = 0
        #: Bytes handed out that the decompressor has not used yet (zlib says how many).
        self.unused = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.taken += len(chunk)
        return chunk


def _limited(
    pieces: Iterator[bytes], stream: _Counted, kind: str, max_bytes: int, max_ratio: int
) -> Iterator[bytes]:
    """Pass ``pieces`` on until the output passes ``max_bytes`` or ``max_ratio``."""
    out = 0
    for piece in pieces:
        out += len(piece)
        if max_bytes and out > max_bytes:
            raise DecodeError(
                f"{kind} data expands past {max_bytes} bytes (max_decompressed_bytes); "
                "raise --max-decompressed-bytes (0: no limit) if the object is genuine"
            )
        if max_ratio and out > RATIO_FLOOR:
            used = max(stream.taken - stream.unused, 1)
            if out > used * max_ratio:
                raise DecodeError(
                    f"{kind} data expands more than {max_ratio}:1 ({out} bytes from {used}; "
                    "a decompression bomb?); raise --max-decompression-ratio (0: no limit) "
                    "if the object is genuine"
                )
        yield piece


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest


def _coalesce(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Join pieces of at most PIECE_SIZE bytes into pieces of _MIN_PIECE..PIECE_SIZE bytes."""
    parts: list[bytes] = []
    size = 0
    for piece in pieces:
        if parts and size + len(piece) > PIECE_SIZE:
            yield b"".join(parts)
            parts, size = [], 0
        parts.append(piece)
        size += len(piece)
        if size >= _MIN_PIECE:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _new_decompressor(kind: str) -> tuple[Any, bool]:
    """Return a fresh one-member decompressor and whether it buffers input itself (bz2)."""
    if kind == "gzip":
        # Both stop at the end of a member (eof, unused_data) and honour max_length by
        # leaving input in unconsumed_tail.
        if _isal_zlib is not None:
            return _isal_zlib.decompressobj(wbits=31), False
        return zlib.decompressobj(wbits=31), False
    return bz2.BZ2Decompressor(), True


def _inflate_errors() -> tuple[type[BaseException], ...]:
    """What the decompressors raise for corrupt data (ISA-L's error is no OSError)."""
    errors: tuple[type[BaseException], ...] = (zlib.error, OSError, EOFError, ValueError)
    if _isal_zlib is not None:
        errors += (_isal_zlib.error,)
    return errors


def _gzip_header_error(head: bytes) -> str | None:
    """zlib's reason for a member starting with ``head`` (1-4 bytes), or None if it may be gzip.

    The fixed start of a member (RFC 1952: magic, method 8, no reserved flags) is checked
    here, in zlib's words, whichever library inflates: ISA-L waits for a whole 10-byte
    header before it looks (so ``ok.gz`` followed by ``garbage!`` would read as truncated)
    and names bad flags vaguely.
    """
    if not _GZIP_MAGIC.startswith(head[:2]):
        return "incorrect header check"
    if len(head) > 2 and head[2] != 8:
        return "unknown compression method"
    if len(head) > 3 and head[3] & 0xE0:
        return "unknown header flags set"
    return None


def _members(stream: _Counted, kind: str) -> Iterator[bytes]:
    """Decompress gzip or bz2, restarting on each member (``cat a.gz b.gz`` is valid gzip)."""
    dec, buffers_input = _new_decompressor(kind)
    errors = _inflate_errors()
    gzip = kind == "gzip"
    started = False  # has the current member consumed any input?
    head = b""  # a gzip member's first bytes, until its fixed header is checked
    consumed = 0  # compressed bytes fed so far, for error positions
    for chunk in stream:
        data = chunk
        while data:
            if not started:
                # NUL padding after the last member is tolerated, like gzip(1) does.
                data = data.lstrip(b"\0")
                if not data:
                    break
                started = True
                head = b""
            if gzip and len(head) < 4:
                head += data[: 4 - len(head)]
                reason = _gzip_header_error(head)
                if reason is not None:
                    raise DecodeError(
                        f"corrupt {kind} stream: {reason} at byte ~{consumed + len(chunk)}"
                    )
            try:
                out = dec.decompress(data, PIECE_SIZE)
                while True:
                    if out:
                        if not buffers_input:
                            stream.unused = len(dec.unconsumed_tail)
                        yield out
                    if dec.eof:
                        break
                    if buffers_input:
                        # bz2 keeps unconsumed input inside; drain until it asks for more.
                        if dec.needs_input:
                            break
                        out = dec.decompress(b"", PIECE_SIZE)
                    else:
                        tail: bytes = dec.unconsumed_tail
                        # A full piece may leave output pending inside zlib even with no tail.
                        if not tail and len(out) < PIECE_SIZE:
                            break
                        out = dec.decompress(tail, PIECE_SIZE)
            except errors as exc:
                raise DecodeError(
                    f"corrupt {kind} stream: {_reason(exc)} at byte ~{consumed + len(chunk)}"
                ) from None
            if dec.eof:
                data = dec.unused_data
                dec, buffers_input = _new_decompressor(kind)
                started = False
            else:
                data = b""
        consumed += len(chunk)
    if started:
        raise DecodeError(
            f"truncated {kind} stream: it ends before the end of its data after {consumed} "
            "compressed bytes; the object was cut off or is still being written, fetch it again"
        )


def _reason(exc: BaseException) -> str:
    # zlib says "Error -3 while decompressing data: invalid block type": keep the tail.
    # ISA-L says "Error -1 Invalid deflate block found": keep "invalid deflate block found".
    text = str(exc) or type(exc).__name__
    text = text.rsplit(": ", 1)[-1]
    match = _ISAL_REASON.fullmatch(text)
    if match:
        text = match[1][:1].lower() + match[1][1:]
    return text


_ISAL_REASON = re.compile(r"Error -?\d+ (.+)")


class _ChunkReader:
    """A minimal file-like view of an iterator of chunks, for zstandard's stream_reader."""

    def __init__(self, chunks: _Counted) -> None:
        self._chunks = chunks
        self._buf = b""
        self._at = 0  # self._buf[:self._at] was read
        self.frames = _ZstdFrameTracker()
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        while self._at >= len(self._buf):
            nxt = next(self._chunks, None)
            if nxt is None:
                return b""
            self._buf, self._at = nxt, 0
        start = self._at
        self._at = len(self._buf) if size < 0 else min(start + size, len(self._buf))
        out = self._buf[start : self._at] if start or self._at < len(self._buf) else self._buf
        self._chunks.unused = len(self._buf) - self._at
        self.frames.feed(out)
        self.consumed += len(out)
        return out


def _zstd(stream: _Counted, max_window: int) -> Iterator[bytes]:
    """Decompress every zstd frame of the stream in bounded pieces."""
    reader = _ChunkReader(stream)
    zreader = zstandard.ZstdDecompressor(max_window_size=max_window).stream_reader(
        cast(IO[bytes], reader), read_size=_ZSTD_READ, read_across_frames=True
    )
    try:
        while True:
            out = zreader.read(PIECE_SIZE)
            if not out:
                break
            yield out
    except zstandard.ZstdError as exc:
        if "too much memory" in str(exc):
            raise DecodeError(
                f"zstd frame needs a window over {max_window} bytes (max_zstd_window; "
                "zstd --long=31 needs 2 GiB): raise --max-zstd-window if the object is "
                "genuine, knowing decoding it holds up to its window in memory"
            ) from None
        raise DecodeError(
            f"corrupt zstd stream: {_reason(exc)} at byte ~{reader.consumed}"
        ) from None
    if not reader.frames.complete:
        raise DecodeError(
            f"truncated zstd stream: it ends inside a frame after {reader.consumed} compressed "
            "bytes; the object was cut off or is still being written, fetch it again"
        )


class _ZstdFrameTracker:
    """Follows zstd frame boundaries in the compressed bytes.

    python-zstandard's readers end silently when the input stops mid-frame; walking the
    frame and block headers (RFC 8878) is how a cut-off object is told apart from a whole one.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._skip = 0
        self._need = 4
        self._state = "magic"
        self._checksum = 0

    @property
    def complete(self) -> bool:
        """True when the bytes fed so far end exactly at a frame boundary."""
        return self._state == "magic" and not self._buf and self._skip == 0

    def feed(self, data: bytes) -> None:
        """Account for the next compressed bytes."""
        pos = 0
        end = len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._buf), end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                header, self._buf = self._buf, b""
                self._advance(header)

    def _advance(self, header: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(header, "little")
            if magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need = "skippable", 4
            else:
                # A wrong magic is reported by the decompressor itself.
                self._state, self._need = "descriptor", 1
        elif state == "skippable":
            self._skip = int.from_bytes(header, "little")
            self._state, self._need = "magic", 4
        elif state == "descriptor":
            desc = header[0]
            single_segment = desc >> 5 & 1
            fcs_size = (1 if single_segment else 0, 2, 4, 8)[desc >> 6]
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[desc & 3] + fcs_size
            self._checksum = 4 if desc >> 2 & 1 else 0
            self._state, self._need = "block", 3
        else:  # block header
            value = int.from_bytes(header, "little")
            block_type = value >> 1 & 3
            self._skip = 1 if block_type == 1 else value >> 3  # RLE blocks carry one byte
            if value & 1:  # last block of the frame
                self._skip += self._checksum
                self._state, self._need = "magic", 4
