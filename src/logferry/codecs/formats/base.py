"""The format contract: decompressed bytes in, columnar :class:`Chunk` runs out."""

from __future__ import annotations

import collections
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from logferry.codecs.framing import DEFAULT_MAX_LINE_BYTES, iter_lines, read_document
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import DecodeError
from logferry.records import Chunk

_BOM = b"\xef\xbb\xbf"

#: Records per chunk for formats that decode a whole document at once.
DOCUMENT_CHUNK_RECORDS = 5000


@dataclass
class FormatOptions:
    """Per-source decoding options."""

    #: json: make one record per element of this top-level list field.
    expand: str | None = None
    #: ndjson/json: fields holding the event time, first present wins.
    timestamp_fields: tuple[str, ...] = ("timestamp", "@timestamp", "time", "ts")
    #: Document formats refuse a decompressed document larger than this.
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


def load_document(chunks: Iterable[bytes], ctx: DecodeContext, what: str) -> Any:
    """Parse the whole object as one JSON document (``what`` names it in errors).

    Returns ``None`` for an empty object: a zero-byte object has nothing to ship.
    """
    data = read_document(chunks, ctx.options.max_document_bytes)
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.strip():
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid {what}: {exc}") from None


def chunk_records(
    records: list[Any],
    timestamp_of: Callable[[Any], int],
) -> Iterator[Chunk]:
    """Yield decoded ``records`` as chunks of bounded size, each line their compact JSON."""
    for start in range(0, len(records), DOCUMENT_CHUNK_RECORDS):
        part = records[start : start + DOCUMENT_CHUNK_RECORDS]
        yield Chunk(
            [orjson.dumps(r).decode() for r in part],
            [timestamp_of(r) for r in part],
            [r if isinstance(r, dict) else {} for r in part],
        )
