"""``azure-ad``: Microsoft Entra ID (Azure AD) sign-in, audit and risk events.

As Microsoft Graph returns them (``{"value": [...]}``), as diagnostic settings write them
(``{"records": [...]}`` or one record per line), or as NDJSON of events. One record per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format
from logferry.codecs.formats.json_events import decode_json_events, small_fields, text_of
from logferry.codecs.timestamps import parse_timestamp
from logferry.records import Chunk

#: Event time by kind: sign-ins, risk detections, audit (and risk activity), diagnostic records.
TIME_FIELDS = ("createdDateTime", "detectedDateTime", "activityDateTime", "time")


class AzureAdFormat(Format):
    """Fields: ``category``, ``operation``, ``user`` and ``level`` where the event has them."""

    name = "azure-ad"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the events in chunks of bounded size."""
        yield from decode_json_events(
            chunks, ctx, "Azure AD document", _events_of, _describe, ("value", "records")
        )


def _events_of(value: dict[str, Any]) -> list[Any] | None:
    for name in ("value", "records"):
        events = value.get(name)
        if isinstance(events, list):
            return events
    return None


def _describe(event: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    ts = None
    for name in TIME_FIELDS:
        raw = event.get(name)
        if raw:
            ts = parse_timestamp(raw)
            break
    props = event.get("properties")
    props = props if isinstance(props, dict) else {}
    initiated = event.get("initiatedBy") or props.get("initiatedBy")
    initiator = initiated.get("user") if isinstance(initiated, dict) else None
    user = (
        text_of(event.get("userPrincipalName"))
        or text_of(props.get("userPrincipalName"))
        or (text_of(initiator.get("userPrincipalName")) if isinstance(initiator, dict) else None)
        or text_of(event.get("identity"))
    )
    return ts, small_fields(
        category=text_of(event.get("category")),
        operation=text_of(event.get("operationName"))
        or text_of(event.get("activityDisplayName"))
        or text_of(event.get("riskEventType")),
        user=user,
        level=text_of(event.get("level")),
    )
