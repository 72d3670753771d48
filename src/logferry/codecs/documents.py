"""Streaming JSON documents: records out of a document that is never held whole.

A structural scan (NumPy over each piece of about :data:`_PIECE` bytes) tracks the nesting
depth outside strings and refuses a document deeper than :data:`MAX_DEPTH` before any parser
sees the bytes. Where the records are the elements of one list (a top-level array, or a list
opening the document such as CloudTrail's ``{"Records": [``), the same scan finds the commas
between elements, and each run of complete elements is parsed at once by orjson: no Python
per JSON token. Other documents go through ijson's C backend (yajl2_c), event by event. A
record (or top-level field) larger than ``max_line_bytes`` fails the document, so memory is
bounded by the record limit and one piece, whatever the document's size.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ijson
import orjson

from logferry.errors import DecodeError

if TYPE_CHECKING:
    import numpy as np

#: Deepest nesting accepted in a document (records are re-serialised, which stops at 255).
MAX_DEPTH = 128
#: Bytes the parser takes at once.
_READ_SIZE = 64 << 10
#: Smaller chunks are joined up to this size: NumPy and orjson pay per call, not per byte.
_PIECE = 256 << 10
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"

# Byte classes of the structural scan (0: any other byte).
_QUOTE, _SLASH, _OPEN, _CLOSE, _COMMA = 1, 2, 3, 4, 5
_CLASSES = bytes(
    {0x22: _QUOTE, 0x5C: _SLASH, 0x5B: _OPEN, 0x7B: _OPEN, 0x5D: _CLOSE, 0x7D: _CLOSE}.get(
        b, _COMMA if b == 0x2C else 0
    )
    for b in range(256)
)
_STRUCTURAL = bytes(1 if c else 0 for c in _CLASSES)


# The pure-Python scan (installs without NumPy): outside strings, the structural bytes; inside
# one, its body up to the closing quote or a backslash that ends the piece.
_PY_OUTSIDE = re.compile(rb'[\[\]{}",]')
_PY_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


class _PyScanner:
    """:class:`_Scanner` in plain Python for installs without NumPy, with the same contract.

    The regular expressions skip string bodies and plain bytes in C; Python steps once per
    bracket, comma and string: several times slower than NumPy, still bounded in memory.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last piece ended inside a string on an escaping backslash

    def feed(self, data: bytes, level: int = 0) -> tuple[list[int], int]:
        """See :meth:`_Scanner.feed`; the commas come as a list."""
        commas: list[int] = []
        close = -1
        at, size, depth = 0, len(data), self.depth
        while at < size:
            if self.in_string:
                if self.escaped:
                    at, self.escaped = at + 1, False
                    continue
                end = _PY_STRING_BODY.match(data, at).end()  # type: ignore[union-attr]
                if end >= size:
                    break
                if data[end] == 0x5C:  # a backslash that ends the piece escapes the next one
                    self.escaped = True
                    break
                self.in_string, at = False, end + 1
                continue
            found = _PY_OUTSIDE.search(data, at)
            if found is None:
                break
            where = found.start()
            at, byte = where + 1, data[where]
            if byte == 0x22:
                self.in_string = True
                continue
            if byte in (0x5B, 0x7B):
                depth += 1
                if depth > self.limit:
                    raise DecodeError(
                        f"JSON nested deeper than {self.limit} levels; such a document is refused"
                    )
            elif byte in (0x5D, 0x7D):
                depth -= 1
            elif level and close < 0 and depth == level:
                commas.append(where)
            # As the NumPy scan: the first structural byte found below ``level`` closes it.
            if level and close < 0 and depth < level:
                close = where
        self.depth = depth
        return commas, close


def _new_scanner(limit: int) -> _Scanner | _PyScanner:
    """The NumPy scan where NumPy is installed (an optional extra), else the Python one."""
    try:
        _numpy()
    except ImportError as exc:
        if exc.name != "numpy":
            raise
        return _PyScanner(limit)
    return _Scanner(limit)


class _Scanner:
    """Tracks the nesting depth of JSON bytes (outside strings), piece after piece.

    Asked about one ``level``, it also reports where the list open at that level has its
    element-separating commas and its closing bracket.
    """

    def __init__(self, limit: int) -> None:
        self.np = _numpy()
        self.none = self.np.zeros(0, dtype=self.np.int64)
        self.limit = limit
        self.depth = 0
        self.in_string = 0  # 1 inside a string at the end of the last piece
        self.backslashes = 0  # backslashes ending the last piece

    def feed(self, data: bytes, level: int = 0) -> tuple[np.ndarray, int]:
        """Account for the next bytes; DecodeError once nesting passes the limit.

        With ``level``, returns the offsets of the commas at that depth and of the first
        bracket that closes it (-1: none), in ``data``; the commas stop at that bracket.
        """
        xp = self.np
        if not data:
            return self.none, -1
        classes = xp.frombuffer(data.translate(_CLASSES), dtype=xp.uint8)
        at = xp.flatnonzero(xp.frombuffer(data.translate(_STRUCTURAL), dtype=xp.bool_))
        kinds = classes[at]
        slashes = kinds == _SLASH
        if self.backslashes or slashes.any():
            at, kinds = self._drop_escapes(at, kinds, slashes, len(data))
        quotes = kinds == _QUOTE
        # Outside a string: an even number of quotes before (a quote itself is not kept).
        parity = xp.cumsum(quotes, dtype=xp.int64)
        keep = xp.flatnonzero(((parity + self.in_string) & 1 == 0) & ~quotes)
        self.in_string = (self.in_string + int(parity[-1] if parity.size else 0)) & 1
        at, kinds = at[keep], kinds[keep]
        steps = (kinds == _OPEN).astype(xp.int64) - (kinds == _CLOSE)
        path = xp.cumsum(steps) + self.depth
        if not path.size:
            return self.none, -1
        if int(path.max()) > self.limit:
            raise DecodeError(
                f"JSON nested deeper than {self.limit} levels; such a document is refused"
            )
        self.depth = int(path[-1])
        if not level:
            return self.none, -1
        commas = at[(kinds == _COMMA) & (path == level)]
        below = xp.flatnonzero(path < level)
        if not below.size:
            return commas, -1
        close = int(at[below[0]])
        return commas[commas < close], close

    def _drop_escapes(
        self, at: np.ndarray, kinds: np.ndarray, slashes: np.ndarray, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The structural bytes without backslashes and the quotes they escape."""
        xp = self.np
        slash_at = at[slashes]
        quote_idx = xp.flatnonzero(kinds == _QUOTE)
        keep = ~slashes
        if quote_idx.size:
            escaped = self._escaped(at[quote_idx], slash_at)
            keep[quote_idx[escaped]] = False
        self.backslashes = self._trailing_backslashes(slash_at, size)
        return at[keep], kinds[keep]

    def _escaped(self, quotes: np.ndarray, slashes: np.ndarray) -> np.ndarray:
        """Which ``quotes`` are escaped, i.e. preceded by an odd run of backslashes."""
        xp = self.np
        runs = xp.zeros(quotes.size, dtype=xp.int64)
        if slashes.size:
            starts = slashes[xp.r_[True, xp.diff(slashes) != 1]]  # where each run begins
            at = xp.searchsorted(slashes, quotes - 1)  # the backslash at quote - 1, if any
            touching = slashes[xp.minimum(at, slashes.size - 1)] == quotes - 1
            run_start = starts[xp.searchsorted(starts, quotes - 1, side="right") - 1]
            runs = xp.where(touching, quotes - run_start, 0)
            runs = xp.where(touching & (run_start == 0), runs + self.backslashes, runs)
        if self.backslashes and quotes[0] == 0:
            runs[0] = self.backslashes
        escaped: np.ndarray = (runs & 1) == 1
        return escaped

    def _trailing_backslashes(self, slashes: np.ndarray, size: int) -> int:
        xp = self.np
        if not slashes.size or slashes[-1] != size - 1:
            return 0
        starts = slashes[xp.r_[True, xp.diff(slashes) != 1]]
        run = size - int(starts[-1])
        return run + self.backslashes if run == size else run


def _pieces(chunks: Iterable[bytes], max_document: int) -> Iterator[bytes]:
    """The document's bytes in pieces of at least :data:`_PIECE` bytes (but the last).

    The byte order mark is dropped; past ``max_document`` bytes, DecodeError.
    """
    parts: list[bytes] = []
    size = 0
    head = True  # the first bytes, until the BOM is known
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if head:
            if size < len(_BOM):
                continue
            parts = [b"".join(parts).removeprefix(_BOM)]
            size = len(parts[0])
            total = size
            head = False
        else:
            total += len(chunk)
        if total > max_document:
            raise DecodeError(
                f"document larger than {max_document} bytes; raise max_document_bytes "
                "or, if the object holds one JSON value per line, use the ndjson format"
            )
        if size >= _PIECE:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts).removeprefix(_BOM) if head else b"".join(parts)


class _Reader:
    """A file-like view of a document's pieces for ijson, with the nesting guard and the
    record budget."""

    def __init__(
        self,
        pieces: Iterable[bytes],
        max_record: int,
        scanner: _Scanner | _PyScanner | None = None,
        head: bytes = b"",
    ) -> None:
        self._pieces = iter(pieces)
        self._buf = head  # already scanned by ``scanner``
        self._at = 0
        self._max_record = max_record
        self._scanner = scanner or _new_scanner(MAX_DEPTH)
        self.total = len(head)
        self._mark = 0
        self.record = 0  # records yielded, for error messages

    def read(self, size: int = -1) -> bytes:
        """The next bytes, at most ``size`` of them."""
        while self._at >= len(self._buf):
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self.total += len(piece)
            # One record (with the parser's read-ahead) may not outgrow the record limit.
            if self.total - self._mark > self._max_record + 2 * _READ_SIZE + len(piece):
                raise _too_large(self.record, self._max_record)
            self._scanner.feed(piece)
            self._buf, self._at = piece, 0
        start = self._at
        self._at = len(self._buf) if size < 0 else min(start + size, len(self._buf))
        return self._buf[start : self._at]

    def mark(self) -> None:
        """A record was yielded: the budget of the next one starts here."""
        self._mark = self.total
        self.record += 1


def _too_large(done: int, limit: int) -> DecodeError:
    return DecodeError(
        f"record {done + 1} of the document is over {limit} bytes; "
        "raise --max-record-bytes to ship it"
    )


@dataclass
class Document:
    """A JSON document being read: its shape, fields read so far, and its records."""

    #: "empty", "array" (records: its elements), "object" or "value" (a scalar).
    kind: str
    #: Object documents: the top-level fields read before the streamed list (all of them
    #: when no list is streamed, i.e. ``list_key`` is None once ``records`` is exhausted).
    fields: dict[str, Any] = field(default_factory=dict)
    #: Object documents: the key whose list ``records`` yields, once it was met.
    list_key: str | None = None
    #: Names of the top-level fields met after the streamed list (too late for its records).
    late_fields: list[str] = field(default_factory=list)
    #: Scalar documents: the value.
    value: Any = None
    #: The records: elements of the top-level array or of the streamed list.
    records: Iterator[Any] = field(default_factory=lambda: iter(()))
    #: The same records in runs (lists) when the list is parsed run by run, else None:
    #: read either this or ``records``, not both.
    batches: Iterator[list[Any]] | None = None


def open_document(
    chunks: Iterable[bytes],
    what: str,
    list_keys: tuple[str, ...],
    limits: tuple[int, int],
    need_fields: bool = True,
) -> Document:
    """Start reading a JSON document; ``list_keys`` name the top-level lists to stream.

    ``limits`` are (max_document_bytes, max_line_bytes). An array document streams its
    elements. An object document streams the elements of the first of ``list_keys`` that
    holds a list; its other fields are in ``fields`` (those before the list as soon as the
    first record comes out; unless ``need_fields``, a list opening the document is parsed
    without them, run by run). Errors are DecodeErrors that name ``what``.
    """
    max_document, max_record = limits
    pieces = _pieces(chunks, max_document)
    head = _first_piece(pieces)
    if not head:
        return Document("empty")
    # The first piece is scanned now: a nesting bomb fails before the document's shape is
    # judged, whatever the format expects.
    scanner = _new_scanner(MAX_DEPTH)
    fast = None if need_fields else _LEADING_LIST.match(head)
    key = fast.group(1).decode() if fast is not None else None
    if head[:1] == b"[" or key in list_keys:
        opened, level = (0, 1) if head[:1] == b"[" else (fast.end() - 1, 2)  # type: ignore[union-attr]
        scanner.feed(head[: opened + 1])
        rest = head[opened + 1 :]
        scanned = _scanned(rest, scanner.feed(rest, level), scanner, pieces, level)
        # In an object (CloudTrail's {"Records": [...]}), fields after the list are
        # validated, not read.
        batches = _list_batches(scanned, pieces, opened + 1, level, max_record, what)
        records = itertools.chain.from_iterable(batches)
        kind = "array" if level == 1 else "object"
        return Document(kind, list_key=key, records=records, batches=batches)
    scanner.feed(head)
    reader = _Reader(pieces, max_record, scanner, head)
    if head[:1] != b"{":
        values = list(_guarded(_items(reader, ""), reader, what))
        return Document("value", value=values[0] if values else None)
    doc = Document("object")
    doc.records = _guarded(_object_records(reader, list_keys, doc), reader, what)
    return doc


def _first_piece(pieces: Iterator[bytes]) -> bytes:
    """The first piece that is not all whitespace, from its first other byte (or b"")."""
    for piece in pieces:
        piece = piece.lstrip(_WHITESPACE)
        if piece:
            return piece
    return b""


def _scanned(
    first: bytes,
    found: tuple[Any, int],
    scanner: _Scanner | _PyScanner,
    pieces: Iterator[bytes],
    level: int,
) -> Iterator[tuple[bytes, tuple[Any, int]]]:
    """Each piece with what ``scanner`` found at ``level`` (``first``: already scanned)."""
    yield first, found
    for data in pieces:
        yield data, scanner.feed(data, level)


def _list_batches(
    scanned: Iterator[tuple[bytes, tuple[Any, int]]],
    pieces: Iterator[bytes],
    offset: int,
    level: int,
    max_record: int,
    what: str,
) -> Iterator[list[Any]]:
    """The elements of the list at nesting ``level`` whose bytes start ``scanned``, in runs.

    The scan gives the commas between elements; each run of complete elements is parsed by
    orjson at once, and the element being read is kept up to ``max_record`` bytes. What
    follows the list comes from ``pieces``; ``offset`` is where the list's bytes start.
    """
    pending: list[bytes] = []  # the bytes of the element not complete yet
    size = 0
    start = offset  # document offset of pending's first byte (offset: of data's)
    done = 0  # elements yielded
    for data, (commas, close) in scanned:
        end = len(data) if close < 0 else close
        if len(commas) or close >= 0:
            _check_sizes(commas, close, size, max_record, done)
        cut = 0
        if len(commas):
            last = int(commas[-1])
            pending.append(data[:last])
            run = _parse_run(pending, start, what)
            if not run:  # "[," or "[ ,": orjson takes "[]" and "[ ]"
                raise DecodeError(f"invalid {what}: a list element is missing near byte {start}")
            done += len(run)
            yield run
            pending, size, cut = [], 0, last + 1
            start = offset + cut
        pending.append(data[cut:end])
        size += end - cut
        if close >= 0:
            if b"".join(pending).strip(_WHITESPACE):
                yield _parse_run(pending, start, what)
            elif done:
                raise DecodeError(f"invalid {what}: a comma ends the list near byte {start}")
            _check_tail(data[close + 1 :], pieces, level, max_record, what)
            return
        if size > max_record:
            raise _too_large(done, max_record)
        offset += len(data)
    raise DecodeError(f"invalid {what}: the document ends inside its list")


def _check_sizes(commas: Any, close: int, size: int, max_record: int, done: int) -> None:
    """DecodeError if an element that ends in this piece is over ``max_record`` bytes.

    ``commas`` (an array, or a list from the Python scan) and ``close`` end elements; the
    first began ``size`` bytes before the piece.
    """
    if isinstance(commas, list):
        previous = -1 - size
        for i, end in enumerate([*commas, close] if close >= 0 else commas):
            if end - previous - 1 > max_record:
                raise _too_large(done + i, max_record)
            previous = end
        return
    ends = commas if close < 0 else _numpy().append(commas, close)
    lengths = _numpy().diff(ends, prepend=-1) - 1
    lengths[0] += size
    over = _numpy().flatnonzero(lengths > max_record)
    if over.size:
        raise _too_large(done + int(over[0]), max_record)


def _numpy() -> Any:
    import numpy  # here: formats that never stream a document never load NumPy

    return numpy


def _parse_run(parts: list[bytes], start: int, what: str) -> list[Any]:
    """The elements in ``parts`` (a run of them, without brackets) starting at ``start``."""
    try:
        run: list[Any] = orjson.loads(b"".join([b"[", *parts, b"]"]))
    except orjson.JSONDecodeError as exc:
        at = start + max(exc.pos - 1, 0)
        raise DecodeError(f"invalid {what}: {exc.msg} near byte {at}") from None
    return run


def _check_tail(
    rest: bytes, pieces: Iterator[bytes], level: int, max_record: int, what: str
) -> None:
    """Validate what follows the list: whitespace after an array, the object's end else."""
    if level == 1:
        for data in itertools.chain([rest], pieces):
            if data.strip(_WHITESPACE):
                raise DecodeError(f"invalid {what}: trailing garbage after the document")
        return
    # The rest of the object, as if the list were the value of a first field "_": parsed
    # in C, built into nothing.
    reader = _Reader(itertools.chain([b'{"_":0', rest], pieces), max_record)
    for _ in _guarded(_items(reader, "_.none"), reader, what):
        pass


def _items(reader: _Reader, prefix: str) -> Iterator[Any]:
    items: Iterator[Any] = ijson.items(reader, prefix, use_float=True, buf_size=_READ_SIZE)
    return items


def _guarded(records: Iterator[Any], reader: _Reader, what: str) -> Iterator[Any]:
    """``records`` with parse errors as one-line DecodeErrors, marking each record read."""
    try:
        for record in records:
            reader.mark()
            yield record
    except ijson.JSONError as exc:
        reason = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
        raise DecodeError(f"invalid {what}: {reason}") from None


_LEADING_LIST = re.compile(rb'\{\s*"([A-Za-z0-9_@$#.-]*)"\s*:\s*\[')


Event = tuple[str, str, Any]
_STARTS = ("start_map", "start_array")
_ENDS = ("end_map", "end_array")


def _object_records(reader: _Reader, list_keys: tuple[str, ...], doc: Document) -> Iterator[Any]:
    """Walk the top-level fields of an object, streaming the first list of ``list_keys``."""
    events: Iterator[Event] = iter(ijson.parse(reader, use_float=True, buf_size=_READ_SIZE))
    next(events)  # the document's start_map
    for _prefix, event, key in events:
        if event == "end_map":
            break
        _prefix, event, value = next(events)
        if event == "start_array" and doc.list_key is None and key in list_keys:
            doc.list_key = key
            yield from ijson.items(_as_array(events, key), "item")
            continue
        if event in _STARTS:
            value = _build(events, event)
        if doc.list_key is None:
            doc.fields[key] = value
        else:
            doc.late_fields.append(key)
    for _event in events:
        pass  # trailing bytes: the parser reports garbage after the document


def _build(events: Iterator[Event], start: str) -> Any:
    """The container that ``start`` opened, from its events."""
    builder = ijson.ObjectBuilder()
    builder.event(start, None)
    depth = 1
    for _prefix, event, value in events:
        builder.event(event, value)
        if event in _STARTS:
            depth += 1
        elif event in _ENDS:
            depth -= 1
            if not depth:
                break
    return builder.value


def _as_array(events: Iterator[Event], key: str) -> Iterator[Event]:
    """The events of the list under ``key``, as if it were the whole document."""
    yield ("", "start_array", None)
    cut = len(key)
    for prefix, event, value in events:
        if prefix == key:  # only the list's own end has exactly this prefix
            yield ("", "end_array", None)
            return
        yield (prefix[cut + 1 :], event, value)
