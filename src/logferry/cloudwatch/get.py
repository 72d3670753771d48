"""``cloudwatch get``: events of a group interleaved in time order, and follow without repeats.

Follow polls FilterLogEvents over the whole group (never a stream list fixed at start, which is
how ``awslogs`` misses streams created later, its bug #214) from a moving watermark minus a
lookback, and drops events it has already printed by (stream, eventId). The window always
moves forward from the last event seen, whatever ``--start`` said (``awslogs`` #334).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from logferry.cloudwatch.client import LogsClient


@dataclass(frozen=True)
class GetQuery:
    """What ``get`` asks for."""

    group: str
    stream_regex: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    filter_pattern: str | None = None


def _pages(client: LogsClient, q: GetQuery, start_ms: int | None) -> Iterator[list[dict[str, Any]]]:
    regex = re.compile(q.stream_regex) if q.stream_regex else None
    token: str | None = None
    while True:
        params: dict[str, Any] = {"logGroupName": q.group}
        if start_ms is not None:
            params["startTime"] = start_ms
        if q.end_ms is not None:
            params["endTime"] = q.end_ms
        if q.filter_pattern:
            params["filterPattern"] = q.filter_pattern
        if token:
            params["nextToken"] = token
        page = client.call("FilterLogEvents", **params)
        events = page.get("events", [])
        if regex is not None:
            events = [e for e in events if regex.search(e.get("logStreamName", ""))]
        # Pages come interleaved already; sorting each one is a cheap guard that keeps memory flat.
        events.sort(key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
        if events:
            yield events
        token = page.get("nextToken")
        if not token:
            return


def get_events(client: LogsClient, q: GetQuery) -> Iterator[dict[str, Any]]:
    """Every matching event between start and end, in time order."""
    for page in _pages(client, q, q.start_ms):
        yield from page


def follow_events(
    client: LogsClient,
    q: GetQuery,
    *,
    stop: threading.Event,
    poll_interval: float = 2.0,
    lookback_ms: int = 120_000,
) -> Iterator[dict[str, Any]]:
    """Matching events as they arrive, each once, until ``stop`` is set (or ``end`` passes).

    An event ingested more than ``lookback_ms`` behind the newest one seen is not shown:
    the window has moved past it.
    """
    watermark = q.start_ms if q.start_ms is not None else int(time.time() * 1000)
    seen: dict[tuple[str, str], int] = {}
    while not stop.is_set():
        window = watermark - lookback_ms
        if q.start_ms is not None:
            window = max(window, q.start_ms)
        fresh: list[dict[str, Any]] = []
        for page in _pages(client, q, window):
            for event in page:
                key = (event.get("logStreamName", ""), str(event.get("eventId", "")))
                if key not in seen:
                    seen[key] = event["timestamp"]
                    fresh.append(event)
        fresh.sort(key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
        yield from fresh
        if fresh:
            watermark = max(watermark, fresh[-1]["timestamp"])
        # Events older than the next window can never come back: forget them.
        floor = watermark - lookback_ms
        seen = {k: ts for k, ts in seen.items() if ts >= floor}
        if q.end_ms is not None and time.time() * 1000 > q.end_ms + lookback_ms:
            return
        stop.wait(poll_interval)
