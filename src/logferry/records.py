"""Records and batches: what flows from codecs to sinks.

The hot path is columnar: a :class:`Batch` holds parallel lists (``lines``,
``timestamps``, optional ``fields``) instead of one object per line, so decoding
and encoding a million lines costs list appends, not a million object creations.
:class:`Record` is the per-line view for code that wants one (user handlers, tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: The ``fields`` key a format sets on a record it could not parse; its value says why.
#: Such records are still shipped as written; stream runners also file them as errors.
MALFORMED_KEY = "_malformed"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a bucket-like source: a partition of the source."""

    key: str
    size: int
    etag: str
    last_modified_ms: int


@dataclass(slots=True)
class Record:
    """One log line as it will be shipped, with its event time (UTC epoch ms)."""

    line: str
    timestamp_ms: int
    fields: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Chunk:
    """A run of decoded records (columnar); codecs yield these."""

    lines: list[str]
    timestamps: list[int]
    fields: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def slice(self, start: int, stop: int | None = None) -> Chunk:
        """Return records ``[start:stop]`` as a new chunk."""
        return Chunk(
            self.lines[start:stop],
            self.timestamps[start:stop],
            None if self.fields is None else self.fields[start:stop],
        )


@dataclass(slots=True)
class Batch:
    """Records of one partition, ending at ``end`` (records from the partition start).

    ``start`` is the position of the first record, so ``end - start == len(lines)``.
    A sink that acknowledges a batch makes ``end`` safe to checkpoint.
    """

    source: str
    key: str
    start: int
    end: int
    lines: list[str]
    timestamps: list[int]
    fields: list[dict[str, Any] | None] | None = None
    nbytes: int = 0
    #: The format that decoded the records (what ``auto`` picked).
    format: str = ""
    #: Work sinks did ahead of ``write`` (see ``Sink.prepare``), keyed by ``id(sink)``.
    prepared: dict[int, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)

    def records(self) -> Iterator[Record]:
        """Iterate the batch as :class:`Record` objects (slow path, for handlers)."""
        meta = {"source": self.source, "key": self.key}
        for i, line in enumerate(self.lines):
            fields = None if self.fields is None else self.fields[i]
            yield Record(line, self.timestamps[i], fields, {**meta, "position": self.start + i})
