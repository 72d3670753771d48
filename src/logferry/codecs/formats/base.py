"""The format contract: decompressed bytes in, columnar :class:`Chunk` runs out."""

from __future__ import annotations

import bisect
import collections
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

import orjson

from logferry.codecs.documents import Document, open_document
from logferry.codecs.framing import DEFAULT_MAX_LINE_BYTES, iter_lines
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import DecodeError
from logferry.records import Chunk

#: Most records per chunk for formats that decode documents.
DOCUMENT_CHUNK_RECORDS = 5000
#: About the most bytes of lines per chunk for formats that decode documents.
DOCUMENT_CHUNK_BYTES = 1 << 20


@dataclass
class FormatOptions:
    """Per-source decoding options."""

    #: json: make one record per element of this top-level list field.
    expand: str | None = None
    #: ndjson/json: fields holding the event time, first present wins.
    timestamp_fields: tuple[str, ...] = ("timestamp", "@timestamp", "time", "ts")
    #: Document formats (streamed) refuse a decompressed document larger than this.
    max_document_bytes: int = 256 * 1024 * 1024
    #: Longest line kept (longer ones keep their head and are counted in
    #: ``counters["truncated_lines"]``); in documents, the largest record (larger fails).
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    #: An object that decompresses to more bytes fails; 0: no limit.
    max_decompressed_bytes: int = 0
    #: An object that decompresses to more than this many times its compressed size, once
    #: past 64 MiB, fails (a decompression bomb); 0: no limit.
    max_decompression_ratio: int = 1000
    #: Largest zstd window accepted (``zstd --long=31`` needs 2 GiB); decoding a frame
    #: holds up to its window (at most the frame's size) in memory.
    max_zstd_window: int = 1 << 31
    #: syslog: IANA zone of RFC 3164 timestamps, which carry no offset (and no year).
    syslog_timezone: str = "UTC"


@dataclass
class DecodeContext:
    """What a format knows about the object it decodes, and where it reports back."""

    key: str
    #: Fallback timestamp when the data has none (UTC epoch ms).
    last_modified_ms: int
    options: FormatOptions = field(default_factory=FormatOptions)
    #: Notable things, e.g. ``counters["not_json"]``: lines shipped as they are.
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    #: The format actually used; set by decoding (the one "auto" picked).
    format_name: str | None = None


class Format(ABC):
    """One log format. A new format is one module plus a registry entry."""

    name: ClassVar[str]

    @abstractmethod
    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Decode already-decompressed ``chunks`` into runs of records."""


#: The fields of a record a format could not parse (shared, never mutated).
NO_FIELDS: dict[str, Any] = {}


def decode_each_line(
    chunks: Iterable[bytes],
    ctx: DecodeContext,
    parse: Callable[[str], tuple[int, dict[str, Any]] | None],
) -> Iterator[Chunk]:
    """One chunk per run of lines, each line parsed by ``parse`` into (ms, fields).

    A line ``parse`` rejects (None) is shipped as written, with the object's time and no
    fields, and counted in ``counters["malformed"]``.
    """
    default = ctx.last_modified_ms
    for lines in iter_lines(chunks, ctx.options.max_line_bytes, ctx.counters):
        timestamps: list[int] = []
        fields: list[dict[str, Any]] = []
        malformed = 0
        for line in lines:
            parsed = parse(line)
            if parsed is None:
                malformed += 1
                timestamps.append(default)
                fields.append(NO_FIELDS)
                continue
            timestamps.append(parsed[0])
            fields.append(parsed[1])
        if malformed:
            ctx.counters["malformed"] += malformed
        yield Chunk(lines, timestamps, fields)


def record_timestamp(record: dict[str, Any], names: Sequence[str], default: int) -> int:
    """Timestamp from the first present field of ``names``, else ``default``."""
    for name in names:
        value = record.get(name)
        if value is not None and value != "":
            parsed = parse_timestamp(value)
            return default if parsed is None else parsed
    return default


def open_json(
    chunks: Iterable[bytes],
    ctx: DecodeContext,
    what: str,
    list_keys: tuple[str, ...] = (),
    need_fields: bool = True,
) -> Document:
    """Start streaming the object as one JSON document (``what`` names it in errors).

    See :func:`~logferry.codecs.documents.open_document`; the limits come from ``ctx``.
    """
    options = ctx.options
    limits = (options.max_document_bytes, options.max_line_bytes)
    return open_document(chunks, what, list_keys, limits, need_fields)


def count_late_fields(doc: Document, ctx: DecodeContext, ignored: tuple[str, ...] = ()) -> None:
    """Count the top-level fields after the streamed list (not in its records) but ``ignored``."""
    late = sum(1 for name in doc.late_fields if name not in ignored)
    if late:
        ctx.counters["fields_after_list"] += late


def chunk_records(
    records: Iterable[Any],
    timestamp_of: Callable[[Any], int],
) -> Iterator[Chunk]:
    """Yield decoded ``records`` as chunks of bounded size, each line their compact JSON.

    A chunk holds at most DOCUMENT_CHUNK_RECORDS records and about DOCUMENT_CHUNK_BYTES of
    lines, so a document of many or large records is never held whole.
    """
    dumps = orjson.dumps
    lines: list[str] = []
    timestamps: list[int] = []
    fields: list[dict[str, Any]] = []
    size = done = 0
    for record in records:
        try:
            line = dumps(record).decode()
        except orjson.JSONEncodeError as exc:
            raise DecodeError(f"cannot re-encode record {done + len(lines) + 1}: {exc}") from None
        lines.append(line)
        timestamps.append(timestamp_of(record))
        fields.append(record if isinstance(record, dict) else {})
        size += len(line)
        if len(lines) >= DOCUMENT_CHUNK_RECORDS or size >= DOCUMENT_CHUNK_BYTES:
            yield Chunk(lines, timestamps, fields)
            done += len(lines)
            lines, timestamps, fields, size = [], [], [], 0
    if lines:
        yield Chunk(lines, timestamps, fields)


def chunk_batches(
    batches: Iterable[list[Any]],
    timestamp_of: Callable[[Any], int],
) -> Iterator[Chunk]:
    """:func:`chunk_records` for records that come in runs (lists): the same chunks, with
    the per-record work done a run at a time."""
    lines: list[str] = []
    timestamps: list[int] = []
    fields: list[dict[str, Any]] = []
    size = done = 0
    for batch in batches:
        try:
            new = [orjson.dumps(record).decode() for record in batch]
        except orjson.JSONEncodeError:
            _reencode_error(batch, done + len(lines))
        times = [timestamp_of(record) for record in batch]
        dicts = [record if type(record) is dict else {} for record in batch]
        ends = list(itertools.accumulate(map(len, new)))  # bytes of new[:i + 1]
        at = 0
        while at < len(new):
            # Up to the record that fills the chunk, by count or by bytes.
            stop = min(len(new), at + DOCUMENT_CHUNK_RECORDS - len(lines))
            before = ends[at - 1] if at else 0
            full = bisect.bisect_left(ends, DOCUMENT_CHUNK_BYTES - size + before, at, stop)
            stop = min(stop, full + 1)
            lines += new[at:stop]
            timestamps += times[at:stop]
            fields += dicts[at:stop]
            size += ends[stop - 1] - before
            at = stop
            if len(lines) >= DOCUMENT_CHUNK_RECORDS or size >= DOCUMENT_CHUNK_BYTES:
                yield Chunk(lines, timestamps, fields)
                done += len(lines)
                lines, timestamps, fields, size = [], [], [], 0
    if lines:
        yield Chunk(lines, timestamps, fields)


def _reencode_error(batch: list[Any], done: int) -> NoReturn:
    """Raise the DecodeError of the first record of ``batch`` orjson cannot encode."""
    for i, record in enumerate(batch):
        try:
            orjson.dumps(record)
        except orjson.JSONEncodeError as exc:
            raise DecodeError(f"cannot re-encode record {done + i + 1}: {exc}") from None
    raise AssertionError("a record of the batch failed to encode")
