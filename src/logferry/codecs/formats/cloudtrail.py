"""``cloudtrail``: AWS CloudTrail log files, ``{"Records": [...]}``, one record per event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.documents import Document
from logferry.codecs.formats.base import (
    DecodeContext,
    Format,
    chunk_batches,
    chunk_records,
    open_json,
)
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import DecodeError
from logferry.records import Chunk

_NOT_CLOUDTRAIL = (
    "not a CloudTrail log file: no top-level Records list; "
    "digest files and other JSON need the json format"
)


class CloudTrailFormat(Format):
    """One record per element of ``Records``, stamped with its ``eventTime``; streamed."""

    name = "cloudtrail"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the trail's events in chunks of bounded size."""
        doc = open_json(chunks, ctx, "CloudTrail document", ("Records",), need_fields=False)
        if doc.kind != "object":
            raise DecodeError(_NOT_CLOUDTRAIL)
        default = ctx.last_modified_ms

        def timestamp_of(event: Any) -> int:
            ts = parse_timestamp(event.get("eventTime")) if isinstance(event, dict) else None
            return default if ts is None else ts

        if doc.batches is not None:
            yield from chunk_batches(doc.batches, timestamp_of)
        else:
            yield from chunk_records(_events(doc), timestamp_of)


def _events(doc: Document) -> Iterator[Any]:
    yield from doc.records
    if doc.list_key is None:
        raise DecodeError(_NOT_CLOUDTRAIL)
