"""`cloudwatch groups/streams/get`: listing, interleaving, time parsing, follow without repeats."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from logferry.errors import ConfigError
from logferry.timeparse import parse_time
from tests.helpers import wait_for

from .conftest import put, run_cw, start_cw

NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", NOW - 300_000),
        ("2h ago", NOW - 7_200_000),
        ("1d", NOW - 86_400_000),
        ("10 minutes ago", NOW - 600_000),
        ("2024-05-01T12:00:00Z", 1_714_564_800_000),
        ("2024-05-01T14:00:00+02:00", 1_714_564_800_000),
        ("2024-05-01 12:00:00", 1_714_564_800_000),
        ("1714564800", 1_714_564_800_000),
        ("1714564800123", 1_714_564_800_123),
        ("now", NOW),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, now_ms=NOW) == expected


def test_parse_time_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="5m, 2h ago"):
        parse_time("yesterday-ish")


def test_groups_and_streams(logs: Any, logs_endpoint: str, prefix: str) -> None:
    put(logs, prefix + "a", "old", ["x"], start_ms=int(time.time() * 1000) - 50_000)
    put(logs, prefix + "a", "new", ["y", "z"], start_ms=int(time.time() * 1000) - 10_000)
    put(logs, prefix + "b", "s", ["w"])
    out = run_cw("groups", "--prefix", prefix, endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [prefix + "a", prefix + "b"]
    out = run_cw("streams", prefix + "a", "--order", "last-event", endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == ["new", "old"]
    assert rows[0][1].endswith("Z")
    assert int(rows[0][3]) > 0
    out = run_cw("streams", prefix + "missing", endpoint=logs_endpoint)
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1


def test_get_interleaves_streams_in_time_order(logs: Any, logs_endpoint: str, prefix: str) -> None:
    group = prefix + "app"
    base = int(time.time() * 1000) - 100_000
    expected = []
    for s in range(3):
        events = [{"timestamp": base + i * 10 + s, "message": f"s{s}-{i}"} for i in range(50)]
        if s == 0:
            logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName=f"web/{s}")
        logs.put_log_events(logGroupName=group, logStreamName=f"web/{s}", logEvents=events)
        expected += [(e["timestamp"], f"web/{s}", e["message"]) for e in events]
    out = run_cw("get", group, "--start", "1h", "--json", endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(g["timestamp"], g["stream"], g["message"]) for g in got] == sorted(expected)
    # Stream regex, event time column, no colour codes in a pipe.
    out = run_cw("get", group, r"web/[12]$", "--start", "1h", "--timestamp", endpoint=logs_endpoint)
    lines = out.stdout.splitlines()
    assert len(lines) == 100
    assert "\x1b[" not in out.stdout
    assert lines[0].split(" ")[0] == "web/1"
    assert lines[0].split(" ")[1].endswith("Z")


def test_get_query_and_filter(logs: Any, logs_endpoint: str, prefix: str) -> None:
    group = prefix + "json"
    put(
        logs,
        group,
        "s",
        [json.dumps({"level": "info", "n": i}) for i in range(3)] + ["not json ERROR"],
    )
    out = run_cw(
        "get", group, "--start", "1h", "--no-stream", "--query", "n", endpoint=logs_endpoint
    )
    assert out.stdout.splitlines() == ["0", "1", "2", "not json ERROR"]
    out = run_cw(
        "get",
        group,
        "--start",
        "1h",
        "--no-stream",
        "--filter-pattern",
        "ERROR",
        endpoint=logs_endpoint,
    )
    assert out.stdout.splitlines() == ["not json ERROR"]
    out = run_cw("get", group, "--start", "soon", endpoint=logs_endpoint)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1


def test_follow_picks_up_new_streams_and_never_repeats(
    logs: Any, logs_endpoint: str, prefix: str
) -> None:
    group = prefix + "follow"
    first = put(logs, group, "one", [f"one-{i}" for i in range(5)])
    proc = start_cw(
        "get",
        group,
        "--follow",
        "--json",
        "--start",
        "5m",
        "--poll-interval",
        "0.2",
        endpoint=logs_endpoint,
    )
    lines: list[dict[str, Any]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(lines) >= 5, timeout=20, message="the first events")
        now = int(time.time() * 1000)
        put(logs, group, "two/late-stream", [f"two-{i}" for i in range(4)], start_ms=now)
        put(logs, group, "one", ["one-late"], start_ms=now + 10)
        wait_for(
            lambda: len(lines) >= 10,
            timeout=20,
            message="events of a stream created after follow started",
        )
        # Several more polls over the same window, proven by later markers in both streams
        # arriving: nothing may repeat.
        for round_ in range(2):
            markers = {f"marker-{round_}-one", f"marker-{round_}-two"}
            now = int(time.time() * 1000)
            put(logs, group, "one", [f"marker-{round_}-one"], start_ms=now)
            put(logs, group, "two/late-stream", [f"marker-{round_}-two"], start_ms=now)
            wait_for(
                lambda markers=markers: markers <= {e["message"] for e in lines},
                timeout=20,
                message=f"the markers of round {round_}",
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    every = [e["message"] for e in lines]
    assert len(every) == len(set(every))  # the markers included
    messages = [m for m in every if not m.startswith("marker-")]
    assert len(messages) == len(set(messages)) == 10
    assert set(messages) == {e["message"] for e in first} | {f"two-{i}" for i in range(4)} | {
        "one-late"
    }
