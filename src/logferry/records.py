"""Records and batches: what flows from codecs to sinks.

The hot path is columnar: a :class:`Batch` holds parallel lists (``lines``,
``timestamps``, optional ``fields``) instead of one object per line, so decoding
and encoding a million lines costs list appends, not a million object creations.
:class:`Record` is the per-line view for code that wants one (user handlers, tests).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np

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


#: One parsed field for every record: a list (None where a record has none) or, from
#: vectorised formats, a NumPy array that sinks such as DuckDB take without conversion.
Column: TypeAlias = "list[Any] | np.ndarray"
#: Parsed fields as columns: name -> one value per record.
Columns = dict[str, Column]


def concat_columns(parts: list[tuple[Columns | None, int]]) -> Columns | None:
    """Join the columns of consecutive runs of ``n`` records; missing values become None.

    A field that is a NumPy array in every run stays one; otherwise it becomes a list.
    """
    if all(cols is None for cols, _ in parts):
        return None
    names: dict[str, None] = {}
    for cols, _ in parts:
        names.update(dict.fromkeys(cols or ()))
    out: Columns = {}
    for name in names:
        pieces = [cols.get(name) if cols else None for cols, _ in parts]
        arrays: list[Any] = [p for p in pieces if is_array(p)]
        if len(arrays) == len(pieces):
            out[name] = arrays[0] if len(arrays) == 1 else _np().concatenate(arrays)
            continue
        column: list[Any] = []
        for piece, (_, n) in zip(pieces, parts, strict=True):
            column.extend(as_list(piece) if piece is not None else [None] * n)
        out[name] = column
    return out


def as_list(column: Column) -> list[Any]:
    """A column as a list of plain Python values (``int``, ``float``, ``bool``, ``str``)."""
    return column.tolist() if is_array(column) else column  # type: ignore[union-attr,return-value]


def is_array(value: Any) -> bool:
    """True for a NumPy array. NumPy is imported only by the parts that use it (vectorised
    formats, DuckDB): when no part has, no column can be an array, and the lighter paths
    (S3 to Mezmo, say) never pay its ~10 MB and import time."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


def _np() -> Any:
    import numpy

    return numpy


def slice_columns(columns: Columns | None, start: int, stop: int | None) -> Columns | None:
    """Records ``[start:stop]`` of ``columns``."""
    return None if columns is None else {k: v[start:stop] for k, v in columns.items()}


@dataclass(slots=True)
class Chunk:
    """A run of decoded records (columnar); codecs yield these.

    Parsed fields come either per record (``fields``, dicts) or per field (``columns``,
    lists): formats that parse into the same few fields for every line use ``columns``,
    which costs no dict per line.
    """

    lines: list[str]
    timestamps: list[int]
    fields: list[dict[str, Any]] | None = None
    columns: Columns | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def slice(self, start: int, stop: int | None = None) -> Chunk:
        """Return records ``[start:stop]`` as a new chunk."""
        return Chunk(
            self.lines[start:stop],
            self.timestamps[start:stop],
            None if self.fields is None else self.fields[start:stop],
            slice_columns(self.columns, start, stop),
        )


def concat_chunks(chunks: list[Chunk]) -> Chunk:
    """Consecutive chunks as one; a single chunk comes back as it is (no copy).

    Records of a chunk without per-record fields get None where another chunk has them.
    """
    if len(chunks) == 1:
        return chunks[0]
    lines: list[str] = []
    timestamps: list[int] = []
    with_fields = any(c.fields is not None for c in chunks)
    fields: list[Any] = []
    for c in chunks:
        lines += c.lines
        timestamps += c.timestamps
        if with_fields:
            fields += c.fields if c.fields is not None else [None] * len(c)
    columns = concat_columns([(c.columns, len(c)) for c in chunks])
    return Chunk(lines, timestamps, fields if with_fields else None, columns)


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
    #: Parsed fields as columns (see :class:`Chunk`); a batch may have both kinds.
    columns: Columns | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def column(self, name: str) -> list[Any] | None:
        """One field for every record (None where absent), from columns or per-record fields."""
        if self.columns is not None and name in self.columns:
            if self.fields is None:
                return as_list(self.columns[name])
            # Both kinds: a column wins where it has a value.
            col = as_list(self.columns[name])
            return [
                col[i] if col[i] is not None else (f.get(name) if f else None)
                for i, f in enumerate(self.fields)
            ]
        if self.fields is None:
            return None
        try:
            # One C-level pass when every record has a dict (what the formats make).
            return list(map(dict.get, self.fields, itertools.repeat(name)))  # type: ignore[arg-type]  # None raises
        except TypeError:  # a record without fields (None), or not a dict
            return [f.get(name) if f else None for f in self.fields]

    def array(self, name: str) -> np.ndarray | None:
        """One field for every record as a NumPy array (object dtype unless vectorised)."""
        if self.columns is not None and self.fields is None:
            col = self.columns.get(name)
            if is_array(col):
                return col  # type: ignore[return-value]
        values = self.column(name)
        if values is None:
            return None
        # Assigning into an empty object array keeps each value as is (no type guessing).
        array = _np().empty(len(values), dtype=object)
        array[:] = values
        return array

    def field_dicts(self) -> list[dict[str, Any] | None] | None:
        """Per-record dicts (slow path: handlers, tests), built from columns when needed."""
        if self.columns is None:
            return self.fields
        columns = {n: as_list(c) for n, c in self.columns.items()}
        out: list[dict[str, Any] | None] = []
        for i in range(len(self.lines)):
            row = dict(self.fields[i] or {}) if self.fields is not None else {}
            row.update({n: c[i] for n, c in columns.items() if c[i] is not None})
            out.append(row or None)
        return out

    def records(self) -> Iterator[Record]:
        """Iterate the batch as :class:`Record` objects (slow path, for handlers).

        Each record gets its own copy of its fields: a handler that changes them must not
        change what other sinks of the same batch see.
        """
        meta = {"source": self.source, "key": self.key}
        dicts = self.field_dicts()
        for i, line in enumerate(self.lines):
            row = None if dicts is None else dicts[i]
            fields = None if row is None else dict(row)
            yield Record(line, self.timestamps[i], fields, {**meta, "position": self.start + i})
