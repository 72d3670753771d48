"""Streaming JSON documents: records out of a document that is never held whole.

ijson's C backend (yajl2_c) parses incrementally. Two guards keep untrusted documents cheap:
a nesting guard refuses a document deeper than :data:`MAX_DEPTH` before the parser sees the
bytes (ijson's event prefixes cost O(depth²)), and a record budget fails a document whose
record (or top-level field) spans more than ``max_line_bytes``. Memory is then bounded by the
record limit and the parser's buffer, whatever the document's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ijson

from logferry.errors import DecodeError

#: NumPy, loaded by the first document (the bucket and stream paths that never see one
#: should not pay for importing it).
np: Any = None

#: Deepest nesting accepted in a document (records are re-serialised, which stops at 255).
MAX_DEPTH = 128
#: Compressed-or-not bytes the parser takes at once.
_READ_SIZE = 64 << 10
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPENERS, _CLOSERS = (0x5B, 0x7B), (0x5D, 0x7D)


class _NestingGuard:
    """Tracks the nesting depth of JSON bytes (outside strings), chunk after chunk."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = 0  # 1 inside a string at the end of the last chunk
        self.backslashes = 0  # backslashes ending the last chunk

    def feed(self, data: bytes) -> None:
        """Account for the next bytes; DecodeError once nesting passes the limit."""
        a = np.frombuffer(data, dtype=np.uint8)
        quotes = np.flatnonzero(a == _QUOTE)
        slashes = np.flatnonzero(a == _BACKSLASH)
        if quotes.size and (slashes.size or self.backslashes):
            quotes = self._unescaped(quotes, slashes)
        brackets = np.flatnonzero(
            (a == _OPENERS[0]) | (a == _OPENERS[1]) | (a == _CLOSERS[0]) | (a == _CLOSERS[1])
        )
        if brackets.size:
            outside = ((np.searchsorted(quotes, brackets) + self.in_string) & 1) == 0
            brackets = brackets[outside]
        if brackets.size:
            kinds = a[brackets]
            steps = np.where((kinds == _OPENERS[0]) | (kinds == _OPENERS[1]), 1, -1)
            path = np.cumsum(steps) + self.depth
            if int(path.max()) > self.limit:
                raise DecodeError(
                    f"JSON nested deeper than {self.limit} levels; such a document is refused"
                )
            self.depth = int(path[-1])
        self.in_string = (self.in_string + int(quotes.size)) & 1
        self.backslashes = self._trailing_backslashes(slashes, len(a))

    def _unescaped(self, quotes: np.ndarray, slashes: np.ndarray) -> np.ndarray:
        """The quotes not escaped, i.e. not preceded by an odd run of backslashes."""
        runs = np.zeros(quotes.size, dtype=np.int64)
        if slashes.size:
            starts = slashes[np.r_[True, np.diff(slashes) != 1]]  # where each run begins
            at = np.searchsorted(slashes, quotes - 1)  # the backslash at quote - 1, if any
            touching = slashes[np.minimum(at, slashes.size - 1)] == quotes - 1
            run_start = starts[np.searchsorted(starts, quotes - 1, side="right") - 1]
            runs = np.where(touching, quotes - run_start, 0)
            runs = np.where(touching & (run_start == 0), runs + self.backslashes, runs)
        if self.backslashes and quotes[0] == 0:
            runs[0] = self.backslashes
        result: np.ndarray = quotes[(runs & 1) == 0]
        return result

    def _trailing_backslashes(self, slashes: np.ndarray, size: int) -> int:
        if not slashes.size or slashes[-1] != size - 1:
            return 0
        starts = slashes[np.r_[True, np.diff(slashes) != 1]]
        run = size - int(starts[-1])
        return run + self.backslashes if run == size else run


# Outside strings: a bracket or the quote that opens a string. Inside one: its body, up to
# the closing quote or a backslash that ends the chunk (escaping the next chunk's first byte).
_PY_OUTSIDE = re.compile(rb'[\[\]{}"]')
_PY_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


class _PyNestingGuard:
    """The nesting guard in plain Python, for installs without NumPy (the same contract).

    The regular expressions skip string bodies and plain bytes in C; Python steps once per
    bracket and string, several times slower than NumPy yet still cheaper than the parser.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last chunk ended inside a string on an escaping backslash

    def feed(self, data: bytes) -> None:
        """Account for the next bytes; DecodeError once nesting passes the limit."""
        at, size = 0, len(data)
        while at < size:
            if self.in_string:
                if self.escaped:
                    at, self.escaped = at + 1, False
                    continue
                end = _PY_STRING_BODY.match(data, at).end()  # type: ignore[union-attr]
                if end == size:
                    return
                if data[end] == _BACKSLASH:  # a lone backslash ends the chunk
                    self.escaped = True
                    return
                self.in_string, at = False, end + 1
                continue
            found = _PY_OUTSIDE.search(data, at)
            if found is None:
                return
            at, byte = found.end(), data[found.start()]
            if byte == _QUOTE:
                self.in_string = True
            elif byte in _OPENERS:
                self.depth += 1
                if self.depth > self.limit:
                    raise DecodeError(
                        f"JSON nested deeper than {self.limit} levels; such a document is refused"
                    )
            else:
                self.depth -= 1


def _nesting_guard(limit: int) -> _NestingGuard | _PyNestingGuard:
    """The NumPy guard when NumPy is installed (it is optional), else the Python one."""
    global np
    if np is None:
        try:
            import numpy
        except ImportError as exc:
            if exc.name != "numpy":
                raise
            return _PyNestingGuard(limit)
        np = numpy
    return _NestingGuard(limit)


class _Reader:
    """A file-like view of decompressed chunks for ijson, with the document's limits."""

    def __init__(self, chunks: Iterable[bytes], max_document: int, max_record: int) -> None:
        self._chunks = iter(chunks)
        self._buf = b""
        self._at = 0
        self._max_document = max_document
        self._max_record = max_record
        self._guard = _nesting_guard(MAX_DEPTH)
        self.total = 0
        self._mark = 0
        self.record = 0  # records yielded, for error messages

    def _next(self) -> bytes | None:
        chunk = next(self._chunks, None)
        if chunk is None:
            return None
        if not self.total:
            chunk = chunk.removeprefix(_BOM)
        self.total += len(chunk)
        if self.total > self._max_document:
            raise DecodeError(
                f"document larger than {self._max_document} bytes; raise max_document_bytes "
                "or, if the object holds one JSON value per line, use the ndjson format"
            )
        # One record (with the parser's read-ahead) may not outgrow the record limit.
        if self.total - self._mark > self._max_record + 2 * _READ_SIZE + len(chunk):
            raise DecodeError(
                f"record {self.record + 1} of the document is over {self._max_record} bytes; "
                "raise --max-record-bytes to ship it"
            )
        self._guard.feed(chunk)
        return chunk

    def first_byte(self) -> bytes:
        """The first byte that is not whitespace (b"" for a blank document), not consumed."""
        while True:
            rest = self._buf[self._at :].lstrip(_WHITESPACE)
            if rest:
                self._buf, self._at = rest, 0
                return rest[:1]
            chunk = self._next()
            if chunk is None:
                return b""
            self._buf, self._at = chunk, 0

    def head(self, size: int) -> bytes:
        """Up to ``size`` bytes from the current position, not consumed."""
        while len(self._buf) - self._at < size:
            chunk = self._next()
            if chunk is None:
                break
            self._buf = self._buf[self._at :] + chunk
            self._at = 0
        return self._buf[self._at : self._at + size]

    def read(self, size: int = -1) -> bytes:
        """The next bytes, at most ``size`` of them."""
        while self._at >= len(self._buf):
            chunk = self._next()
            if chunk is None:
                return b""
            self._buf, self._at = chunk, 0
        start = self._at
        self._at = len(self._buf) if size < 0 else min(start + size, len(self._buf))
        return self._buf[start : self._at]

    def mark(self) -> None:
        """A record was yielded: the budget of the next one starts here."""
        self._mark = self.total
        self.record += 1


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
    without them, all in C). Errors are DecodeErrors that name ``what``.
    """
    reader = _Reader(chunks, *limits)
    first = reader.first_byte()
    if not first:
        return Document("empty")
    if first == b"[":
        return Document("array", records=_guarded(_items(reader, "item"), reader, what))
    if first != b"{":
        values = list(_guarded(_items(reader, ""), reader, what))
        return Document("value", value=values[0] if values else None)
    doc = Document("object")
    fast = None if need_fields else _leading_list(reader.head(4096), list_keys)
    if fast is not None:
        # CloudTrail's {"Records": [...]}: the elements come out of C without Python per
        # JSON event; fields after the list are validated, not read.
        doc.list_key = fast
        doc.records = _guarded(_items(reader, f"{fast}.item"), reader, what)
    else:
        doc.records = _guarded(_object_records(reader, list_keys, doc), reader, what)
    return doc


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


def _leading_list(head: bytes, list_keys: tuple[str, ...]) -> str | None:
    """The list key when the document opens with ``{"<key>": [``."""
    m = _LEADING_LIST.match(head)
    if m is None:
        return None
    key = m.group(1).decode()
    return key if key in list_keys else None


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
