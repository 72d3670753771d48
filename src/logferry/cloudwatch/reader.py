"""Reading one log stream forward with GetLogEvents tokens, resumable from a saved cursor."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from logferry.cloudwatch.client import InvalidTokenError, LogsClient
from logferry.cloudwatch.cursor import StreamCursor

MAX_PAGE = 10_000  # GetLogEvents' own limit


@dataclass(slots=True)
class Page:
    """Events of one GetLogEvents call and the cursor just after them."""

    events: list[dict[str, Any]]
    cursor: StreamCursor
    caught_up: bool


class StreamReader:
    """Reads one stream page by page; not shared between threads."""

    def __init__(
        self,
        client: LogsClient,
        group: str,
        stream: str,
        cursor: StreamCursor | None = None,
        *,
        start: int | None = None,
        page_size: int = MAX_PAGE,
    ) -> None:
        self.client = client
        self.group = group
        self.stream = stream
        self.cursor = cursor if cursor is not None else StreamCursor(start=start)
        self.page_size = max(1, min(page_size, MAX_PAGE))

    def read(self, limit: int | None = None) -> Page:
        """The next page (up to ``limit`` events); advances the in-memory cursor."""
        cur = self.cursor
        size = max(1, min(limit or self.page_size, self.page_size))
        try:
            response = self._get(cur.token, cur.start, size)
        except InvalidTokenError:
            if cur.last_ts is None:
                raise
            return self._resume_from_time(cur, size)
        token = response.get("nextForwardToken")
        events = response.get("events", [])
        page = Page(events, _advance(cur, events, token), caught_up=token == cur.token)
        self.cursor = page.cursor
        return page

    def _resume_from_time(self, cur: StreamCursor, size: int) -> Page:
        # The token expired: restart at the last event's millisecond and skip the events of
        # that millisecond already read, so nothing is lost and nothing repeats.
        assert cur.last_ts is not None
        skip = cur.at_last_ts
        response = self._get(None, cur.last_ts, min(MAX_PAGE, size + skip))
        events = response.get("events", [])
        dropped = 0
        while (
            dropped < skip and dropped < len(events) and events[dropped]["timestamp"] == cur.last_ts
        ):
            dropped += 1
        base = replace(cur, token=None, start=cur.last_ts, at_last_ts=dropped)
        token = response.get("nextForwardToken")
        page = Page(events[dropped:], _advance(base, events[dropped:], token), caught_up=False)
        self.cursor = page.cursor
        return page

    def _get(self, token: str | None, start: int | None, size: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "logGroupName": self.group,
            "logStreamName": self.stream,
            "startFromHead": True,
            "limit": size,
        }
        if start is not None:
            params["startTime"] = start
        if token:
            params["nextToken"] = token
        return self.client.call("GetLogEvents", **params)


def _advance(cur: StreamCursor, events: list[dict[str, Any]], token: str | None) -> StreamCursor:
    if not events:
        return replace(cur, token=token or cur.token)
    last = events[-1]["timestamp"]
    same = 0
    for event in reversed(events):
        if event["timestamp"] != last:
            break
        same += 1
    if same == len(events) and last == cur.last_ts:
        same += cur.at_last_ts
    return StreamCursor(token=token or cur.token, start=cur.start, last_ts=last, at_last_ts=same)
