"""``json``: one JSON document per object, optionally expanded into one record per element."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import (
    DecodeContext,
    Format,
    chunk_records,
    load_document,
    record_timestamp,
)
from logferry.errors import DecodeError
from logferry.records import Chunk


class JsonFormat(Format):
    """A whole JSON document (may span many lines); read into memory up to a limit.

    A top-level array is one record per element (there is no field to name); with
    ``options.expand`` a top-level list field is, each element merged with the other fields.
    """

    name = "json"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the document's records in chunks of bounded size."""
        doc = load_document(chunks, ctx, "JSON document")
        if doc is None:
            return
        field = ctx.options.expand
        records: list[Any]
        if field is not None:
            records = _expand(doc, field)
        elif isinstance(doc, list):
            records = doc
        else:
            records = [doc]
        names = ctx.options.timestamp_fields
        default = ctx.last_modified_ms

        def timestamp_of(record: Any) -> int:
            if isinstance(record, dict):
                return record_timestamp(record, names, default)
            return default

        yield from chunk_records(records, timestamp_of)


def _expand(doc: Any, field: str) -> list[Any]:
    """One record per element of ``doc[field]``, carrying the other top-level fields."""
    if not isinstance(doc, dict):
        raise DecodeError(
            f"cannot expand field {field!r}: the document is a JSON {type(doc).__name__}, "
            "not an object; drop the expand option"
        )
    items = doc.get(field)
    if not isinstance(items, list):
        found = "missing" if field not in doc else f"a {type(items).__name__}, not a list"
        raise DecodeError(f"cannot expand field {field!r}: it is {found}; check the expand option")
    others = {k: v for k, v in doc.items() if k != field}
    return [
        {**others, **item} if isinstance(item, dict) else {**others, field: item} for item in items
    ]
