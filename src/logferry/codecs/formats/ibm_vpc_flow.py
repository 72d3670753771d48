"""``ibm-vpc-flow``: IBM Cloud VPC flow-log objects, one record per flow.

An object is one JSON document: collector metadata at the top level and a ``flow_logs``
list. Each record is the metadata plus one flow plus the object key, so it stands alone.
``number_of_flow_logs`` is not trusted (real objects disagree with their list).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format, chunk_records, load_document
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import DecodeError
from logferry.records import Chunk

_DROPPED = ("flow_logs", "number_of_flow_logs")


class IbmVpcFlowFormat(Format):
    """One record per flow, stamped with ``start_time`` (falling back to capture times)."""

    name = "ibm-vpc-flow"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the object's flows in chunks of bounded size; no flows yields nothing."""
        doc = load_document(chunks, ctx, "IBM VPC flow log document")
        if not isinstance(doc, dict):
            kind = "empty" if doc is None else f"a JSON {type(doc).__name__}"
            raise DecodeError(
                f"not an IBM VPC flow log: the object is {kind}, not a JSON object with flow_logs"
            )
        flows = doc.get("flow_logs")
        if not isinstance(flows, list):
            raise DecodeError(
                "not an IBM VPC flow log: no top-level flow_logs list; "
                "pick the json format for other JSON documents"
            )
        top = {k: v for k, v in doc.items() if k not in _DROPPED}
        key = ctx.key
        records: list[dict[str, Any]] = []
        for flow in flows:
            if isinstance(flow, dict):
                records.append({**top, **flow, "key": key})
            else:
                ctx.counters["flow_not_object"] += 1
                records.append({**top, "flow_log": flow, "key": key})
        default = ctx.last_modified_ms

        def timestamp_of(record: dict[str, Any]) -> int:
            # The merged record holds the flow's capture_start_time if it has one, else the
            # object's, which is exactly the fallback order wanted after start_time.
            ts = parse_timestamp(record.get("start_time"))
            if ts is None:
                ts = parse_timestamp(record.get("capture_start_time"))
            return default if ts is None else ts

        yield from chunk_records(records, timestamp_of)
