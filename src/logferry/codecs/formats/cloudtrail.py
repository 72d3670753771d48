"""``cloudtrail``: AWS CloudTrail log files, ``{"Records": [...]}``, one record per event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format, chunk_records, load_document
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import DecodeError
from logferry.records import Chunk


class CloudTrailFormat(Format):
    """One record per element of ``Records``, stamped with its ``eventTime``."""

    name = "cloudtrail"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the trail's events in chunks of bounded size."""
        doc = load_document(chunks, ctx, "CloudTrail document")
        records = doc.get("Records") if isinstance(doc, dict) else None
        if not isinstance(records, list):
            raise DecodeError(
                "not a CloudTrail log file: no top-level Records list; "
                "digest files and other JSON need the json format"
            )
        default = ctx.last_modified_ms

        def timestamp_of(event: Any) -> int:
            ts = parse_timestamp(event.get("eventTime")) if isinstance(event, dict) else None
            return default if ts is None else ts

        yield from chunk_records(records, timestamp_of)
