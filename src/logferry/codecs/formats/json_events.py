"""Shared decoding for JSON event exports: one document with an event list, or NDJSON.

Audit exports come both ways: an API response saved whole (``{"value": [...]}``, possibly
pretty-printed) or one JSON value per line, each an event or a page holding events. The
first line decides: a line that parses (or cannot start a document) means lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from logferry.codecs.documents import Document
from logferry.codecs.formats.base import (
    DOCUMENT_CHUNK_RECORDS,
    NO_FIELDS,
    DecodeContext,
    open_json,
)
from logferry.codecs.framing import iter_lines, peek
from logferry.records import Chunk

#: Returns a page's event list (possibly empty), or None when the value is one event.
EventsOf = Callable[[dict[str, Any]], list[Any] | None]
#: Returns an event's timestamp (UTC ms, or None) and its small ``fields`` dict.
Describe = Callable[[dict[str, Any]], tuple[int | None, dict[str, Any]]]

_HEAD = 64 * 1024
_BOM = b"\xef\xbb\xbf"


def decode_json_events(
    chunks: Iterable[bytes],
    ctx: DecodeContext,
    what: str,
    events_of: EventsOf,
    describe: Describe,
    list_keys: tuple[str, ...],
) -> Iterator[Chunk]:
    """Decode a document or NDJSON of events (``what`` names the document in errors).

    A document is streamed: ``list_keys`` name the top-level lists ``events_of`` may return.

    Values that are not JSON objects are shipped as they are and counted as ``malformed``.
    """
    head, data = peek(chunks, _HEAD)
    out = _Collector(ctx, describe)
    if _is_document(head):
        doc = open_json(data, ctx, what, list_keys, need_fields=False)
        events: Iterable[Any] = doc.records
        if doc.kind == "value":
            events = [doc.value]
        for event in _then_rest(events, doc, events_of):
            out.add(orjson.dumps(event).decode(), event)
            if len(out.lines) >= DOCUMENT_CHUNK_RECORDS:
                yield from out.flush()
        yield from out.flush()
        return
    loads = orjson.loads
    json_error = orjson.JSONDecodeError
    for lines in iter_lines(data, ctx.options.max_line_bytes, ctx.counters):
        for line in lines:
            try:
                value = loads(line)
            except json_error:
                out.add(line, None)
                continue
            page = events_of(value) if type(value) is dict else None
            if page is None:
                out.add(line, value)
            else:
                for event in page:
                    out.add(orjson.dumps(event).decode(), event)
                    if len(out.lines) >= DOCUMENT_CHUNK_RECORDS:
                        yield from out.flush()
        yield from out.flush()


def _then_rest(events: Iterable[Any], doc: Document, events_of: EventsOf) -> Iterator[Any]:
    """The streamed events, then, for an object holding no event list, what it holds."""
    yield from events
    if doc.kind == "object" and doc.list_key is None:
        rest = events_of(doc.fields)
        yield from ([doc.fields] if rest is None else rest)


def _is_document(head: bytes) -> bool:
    """True when the data starts with a JSON value spread over several lines."""
    text = head.removeprefix(_BOM).lstrip()
    if not text.startswith((b"{", b"[")):
        return False
    newline = text.find(b"\n")
    if newline < 0:
        return False  # one line, whole or longer than the head: lines handle both
    first = text[:newline].rstrip()
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        # A broken NDJSON line still ends like a value; a document's first line does not.
        return not first.endswith((b"}", b"]"))
    return False


class _Collector:
    """Columns of the chunk being built."""

    def __init__(self, ctx: DecodeContext, describe: Describe) -> None:
        self.ctx = ctx
        self.describe = describe
        self.default = ctx.last_modified_ms
        self.lines: list[str] = []
        self.timestamps: list[int] = []
        self.fields: list[dict[str, Any]] = []

    def add(self, line: str, event: Any) -> None:
        """Add one record; ``event`` is its parsed value (None when it did not parse)."""
        self.lines.append(line)
        if type(event) is dict:
            ts, fields = self.describe(event)
            self.timestamps.append(self.default if ts is None else ts)
            self.fields.append(fields)
        else:
            self.ctx.counters["malformed"] += 1
            self.timestamps.append(self.default)
            self.fields.append(NO_FIELDS)

    def flush(self) -> Iterator[Chunk]:
        """Yield the collected records as one chunk, if there are any, and start anew."""
        if self.lines:
            yield Chunk(self.lines, self.timestamps, self.fields)
            self.lines, self.timestamps, self.fields = [], [], []


def text_of(value: Any) -> str | None:
    """``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def small_fields(**values: str | None) -> dict[str, Any]:
    """A fields dict of the values that are present."""
    return {name: value for name, value in values.items() if value is not None}
