"""``ibm-vpc-flow``: IBM Cloud VPC flow-log objects, one record per flow.

An object is one JSON document: collector metadata at the top level and a ``flow_logs``
list. Each record is the metadata plus one flow plus the object key, so it stands alone.
``number_of_flow_logs`` is not trusted (real objects disagree with their list).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.documents import Document
from logferry.codecs.formats.base import (
    DecodeContext,
    Format,
    chunk_records,
    count_late_fields,
    open_json,
)
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import DecodeError
from logferry.records import Chunk

_DROPPED = ("flow_logs", "number_of_flow_logs")


class IbmVpcFlowFormat(Format):
    """One record per flow, stamped with ``start_time`` (falling back to capture times)."""

    name = "ibm-vpc-flow"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the object's flows in chunks of bounded size; no flows yields nothing."""
        doc = open_json(chunks, ctx, "IBM VPC flow log document", ("flow_logs",))
        if doc.kind != "object":
            kind = {"empty": "empty", "array": "a JSON list"}.get(
                doc.kind, f"a JSON {type(doc.value).__name__}"
            )
            raise DecodeError(
                f"not an IBM VPC flow log: the object is {kind}, not a JSON object with flow_logs"
            )
        default = ctx.last_modified_ms

        def timestamp_of(record: dict[str, Any]) -> int:
            # The merged record holds the flow's capture_start_time if it has one, else the
            # object's, which is exactly the fallback order wanted after start_time.
            ts = parse_timestamp(record.get("start_time"))
            if ts is None:
                ts = parse_timestamp(record.get("capture_start_time"))
            return default if ts is None else ts

        yield from chunk_records(_flows(doc, ctx), timestamp_of)
        # IBM writes the object's own key last; each record gets the key it was read from.
        count_late_fields(doc, ctx, (*_DROPPED, "key"))


def _flows(doc: Document, ctx: DecodeContext) -> Iterator[dict[str, Any]]:
    """Each flow merged with the collector metadata (the fields before the list) and the key."""
    key = ctx.key
    top: dict[str, Any] | None = None
    for flow in doc.records:
        if top is None:
            top = {k: v for k, v in doc.fields.items() if k not in _DROPPED}
        if isinstance(flow, dict):
            yield {**top, **flow, "key": key}
        else:
            ctx.counters["flow_not_object"] += 1
            yield {**top, "flow_log": flow, "key": key}
    if doc.list_key is None:
        raise DecodeError(
            "not an IBM VPC flow log: no top-level flow_logs list; "
            "pick the json format for other JSON documents"
        )
