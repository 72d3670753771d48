"""CloudWatchSource: the StreamSource contract (partitions, read, caught_up, resume from cursor)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from logferry.cloudwatch.cursor import StreamCursor
from logferry.errors import ConfigError
from logferry.sources.cloudwatch import CloudWatchSource, split_key

from .conftest import put


def read_all(part: Any, max_records: int) -> tuple[list[str], list[int], str | None]:
    """Read until caught up; return lines, timestamps and the last cursor."""
    lines: list[str] = []
    stamps: list[int] = []
    cursor = None
    for _ in range(1000):
        result = part.read(max_records)
        lines += result.chunk.lines
        stamps += result.chunk.timestamps
        assert result.chunk.fields is None
        cursor = result.cursor
        if result.caught_up:
            return lines, stamps, cursor
    raise AssertionError("never caught up")


def test_partitions_keys_and_filters(logs: Any, logs_endpoint: str, prefix: str) -> None:
    put(logs, prefix + "a/b", "x/y", ["1"])
    put(logs, prefix + "a/b", "z", ["2"])
    put(logs, prefix + "c", "x/y", ["3"])
    source = CloudWatchSource.from_url(f"cloudwatch://{prefix}", endpoint_url=logs_endpoint)
    parts = {p.key: p for p in source.partitions()}
    assert set(parts) == {f"{prefix}a/b:x/y", f"{prefix}a/b:z", f"{prefix}c:x/y"}
    assert split_key(f"{prefix}a/b:x/y") == (prefix + "a/b", "x/y")
    assert all(int(p.version) > 0 for p in parts.values())
    assert source.id == f"cloudwatch://{prefix}"
    only = CloudWatchSource.from_url(f"cloudwatch://{prefix}?streams=z", endpoint_url=logs_endpoint)
    assert [p.key for p in only.partitions()] == [f"{prefix}a/b:z"]
    rx = CloudWatchSource.from_url(
        f"cloudwatch://{prefix}c?stream_regex=%5Ex/", endpoint_url=logs_endpoint
    )
    assert [p.key for p in rx.partitions()] == [f"{prefix}c:x/y"]


def test_read_pages_and_resume_from_cursor(logs: Any, logs_endpoint: str, prefix: str) -> None:
    events = put(logs, prefix + "g", "s", [f"m{i}" for i in range(25)])
    source = CloudWatchSource.from_url(f"cloudwatch://{prefix}", endpoint_url=logs_endpoint)
    (part_info,) = source.partitions()
    part = source.open(part_info, None, 0)
    first = part.read(10)
    assert first.chunk.lines == [f"m{i}" for i in range(10)]
    assert first.chunk.timestamps == [e["timestamp"] for e in events[:10]]
    assert not first.caught_up
    assert first.cursor
    # A new process resumes right after the acknowledged cursor.
    resumed = source.open(part_info, first.cursor, 10)
    lines, _, cursor = read_all(resumed, 7)
    assert lines == [f"m{i}" for i in range(10, 25)]
    again = source.open(part_info, cursor, 25).read(100)
    assert again.chunk.lines == []
    assert again.caught_up
    put(logs, prefix + "g", "s", ["late"], start_ms=int(time.time() * 1000))
    assert read_all(source.open(part_info, cursor, 25), 100)[0] == ["late"]


def test_expired_token_resumes_from_the_last_event(
    logs: Any, logs_endpoint: str, prefix: str
) -> None:
    base = int(time.time() * 1000) - 30_000
    logs.create_log_group(logGroupName=prefix + "g")
    logs.create_log_stream(logGroupName=prefix + "g", logStreamName="s")
    # Three events share one millisecond: the fallback must skip exactly the ones already read.
    stamps = [base, base + 1, base + 1, base + 1, base + 2]
    logs.put_log_events(
        logGroupName=prefix + "g",
        logStreamName="s",
        logEvents=[{"timestamp": t, "message": f"e{i}"} for i, t in enumerate(stamps)],
    )
    source = CloudWatchSource.from_url(f"cloudwatch://{prefix}", endpoint_url=logs_endpoint)
    (info,) = source.partitions()
    first = source.open(info, None, 0).read(3)
    assert first.chunk.lines == ["e0", "e1", "e2"]
    saved = first.cursor
    assert isinstance(saved, StreamCursor)
    assert saved.last_ts == base + 1
    assert saved.at_last_ts == 2
    expired = StreamCursor(
        token="f/not-a-token", start=saved.start, last_ts=saved.last_ts, at_last_ts=2
    )
    lines, _, _ = read_all(source.open(info, expired, 3), 100)
    assert lines == ["e3", "e4"]


def test_start_and_deleted_stream(logs: Any, logs_endpoint: str, prefix: str) -> None:
    now = int(time.time() * 1000)
    put(logs, prefix + "g", "s", ["old"], start_ms=now - 3_600_000)
    put(logs, prefix + "g", "s", ["new"], start_ms=now - 60_000)
    source = CloudWatchSource.from_url(
        f"cloudwatch://{prefix}?start=10m", endpoint_url=logs_endpoint
    )
    (info,) = source.partitions()
    assert read_all(source.open(info, None, 0), 100)[0] == ["new"]
    part = source.open(info, None, 0)
    logs.delete_log_stream(logGroupName=prefix + "g", logStreamName="s")
    result = part.read(10)
    assert result.finished
    assert result.chunk.lines == []


def test_bad_urls() -> None:
    with pytest.raises(ConfigError, match="unknown parameter"):
        CloudWatchSource.from_url("cloudwatch:///x?stream=a")
    with pytest.raises(ConfigError, match="exclude"):
        CloudWatchSource.from_url("cloudwatch:///x?streams=a&stream_regex=b")
    with pytest.raises(ConfigError):
        CloudWatchSource.from_url("cloudwatch:///x?stream_regex=(")
