"""``gsuite-login``: Google Workspace Admin SDK Reports API activities (login and others).

``activities.list`` pages (``{"kind": "admin#reports#activities", "items": [...]}``), saved
whole or one page per line, or NDJSON of activities. One record per activity, at ``id.time``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format
from logferry.codecs.formats.json_events import decode_json_events, small_fields, text_of
from logferry.codecs.timestamps import parse_timestamp
from logferry.records import Chunk

_PAGE_KIND = "admin#reports#activities"


class GsuiteLoginFormat(Format):
    """Fields: ``application``, ``user`` (actor email), ``event`` (event names) and ``ip``."""

    name = "gsuite-login"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield the activities in chunks of bounded size."""
        yield from decode_json_events(
            chunks, ctx, "Reports API document", _events_of, _describe, ("items",)
        )


def _events_of(value: dict[str, Any]) -> list[Any] | None:
    items = value.get("items")
    if isinstance(items, list):
        return items
    # A page without activities has no "items" at all: it holds nothing to ship.
    return [] if value.get("kind") == _PAGE_KIND else None


def _describe(activity: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    ident = activity.get("id")
    ident = ident if isinstance(ident, dict) else {}
    actor = activity.get("actor")
    events = activity.get("events")
    names = (
        [e["name"] for e in events if isinstance(e, dict) and isinstance(e.get("name"), str)]
        if isinstance(events, list)
        else []
    )
    return parse_timestamp(ident.get("time")), small_fields(
        application=text_of(ident.get("applicationName")),
        user=text_of(actor.get("email")) if isinstance(actor, dict) else None,
        event=",".join(names) or None,
        ip=text_of(activity.get("ipAddress")),
    )
