"""``json``: one JSON document per object, optionally expanded into one record per element."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.documents import Document
from logferry.codecs.formats.base import (
    DecodeContext,
    Format,
    chunk_batches,
    chunk_records,
    count_late_fields,
    open_json,
    record_timestamp,
)
from logferry.errors import DecodeError
from logferry.records import Chunk


class JsonFormat(Format):
    """A whole JSON document (may span many lines), streamed: never held whole.

    A top-level array is one record per element (there is no field to name); with
    ``options.expand`` a top-level list field is, each element merged with the other fields
    that come before the list (fields after it are counted in ``fields_after_list``).
    """

    name = "json"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the document's records in chunks of bounded size."""
        field = ctx.options.expand
        doc = open_json(chunks, ctx, "JSON document", (field,) if field else ())
        records: Iterable[Any]
        if doc.kind == "empty":
            return
        if field is not None:
            records = _expand(doc, field)
        elif doc.kind == "array":
            records = doc.records
        elif doc.kind == "object":
            records = _whole(doc)
        else:
            records = [doc.value]
        names = ctx.options.timestamp_fields
        default = ctx.last_modified_ms

        def timestamp_of(record: Any) -> int:
            if isinstance(record, dict):
                return record_timestamp(record, names, default)
            return default

        if field is None and doc.batches is not None:
            yield from chunk_batches(doc.batches, timestamp_of)
        else:
            yield from chunk_records(records, timestamp_of)
        count_late_fields(doc, ctx)


def _whole(doc: Document) -> Iterator[Any]:
    """The object document as one record (read whole: it is one record)."""
    for _ in doc.records:
        pass  # no list is streamed: this reads every field
    yield doc.fields


def _expand(doc: Document, field: str) -> Iterator[Any]:
    """One record per element of ``doc[field]``, carrying the other top-level fields."""
    if doc.kind != "object":
        kind = "list" if doc.kind == "array" else type(doc.value).__name__
        raise DecodeError(
            f"cannot expand field {field!r}: the document is a JSON {kind}, "
            "not an object; drop the expand option"
        )
    others: dict[str, Any] | None = None
    for item in doc.records:
        if others is None:
            others = dict(doc.fields)
        yield {**others, **item} if isinstance(item, dict) else {**others, field: item}
    if doc.list_key is None:
        items = doc.fields.get(field)
        found = "missing" if field not in doc.fields else f"a {type(items).__name__}, not a list"
        raise DecodeError(f"cannot expand field {field!r}: it is {found}; check the expand option")
