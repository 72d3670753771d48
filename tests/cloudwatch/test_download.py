"""`cloudwatch download`: file names, restart after SIGKILL, throttling, SIGHUP, env, status,
two downloads on one directory, and directories of earlier versions (state files)."""

from __future__ import annotations

import hashlib
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from logferry.cloudwatch.cursor import StreamCursor
from logferry.cloudwatch.layout import stream_relpath
from logferry.cloudwatch.reader import StreamReader
from logferry.cloudwatch.status import collect_status
from tests.helpers import wait_for

from .conftest import ThrottlingProxy, data_files, put, run_cw, start_cw


def lines_of(root: Path, group: str, stream: str) -> list[str]:
    """The lines downloaded for (group, stream)."""
    return (root / stream_relpath(group, stream, as_json=False)).read_text().splitlines()


def events_written(root: Path) -> int:
    """Events the ledger of a download directory acknowledged, all streams together."""
    if not (root / ".logferry" / "ledger.db").exists():
        return 0
    return sum(s["events"] for s in collect_status(root)["streams"])


def test_names_with_slash_and_case_stay_apart(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "names"
    names = ["a/b", "a%2Fb", "A/B", "a/B", "..", ".hidden", "a", "A"]
    for name in names:
        put(logs, group, name, [f"{name} #{i}" for i in range(3)])
    out = run_cw(
        "download", "--group-prefix", prefix, "--dir", str(tmp_path), endpoint=logs_endpoint
    )
    assert out.returncode == 0, out.stderr
    files = data_files(tmp_path)
    assert len(files) == len(names)
    # Case-insensitive disks: no two paths may fold to the same name either.
    assert len({str(f).lower() for f in files}) == len(names)
    assert all(f.parent.parent == tmp_path for f in files)  # '/' never makes a directory
    for name in names:
        assert lines_of(tmp_path, group, name) == [f"{name} #{i}" for i in range(3)]


def test_json_lines_and_one_line_per_event(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "json"
    events = put(logs, group, "s", ["plain", "two\nlines", "trailing\n"])
    out = run_cw(
        "download",
        "--group-prefix",
        prefix,
        "--dir",
        str(tmp_path),
        "--json",
        endpoint=logs_endpoint,
    )
    assert out.returncode == 0, out.stderr
    rows = [
        json.loads(x)
        for x in (tmp_path / stream_relpath(group, "s", as_json=True)).read_text().splitlines()
    ]
    assert [(r["timestamp"], r["message"]) for r in rows] == [
        (e["timestamp"], e["message"]) for e in events
    ]


def test_restart_after_sigkill_has_no_gap_and_no_duplicate(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "crash"
    streams = {f"svc/{i}": [f"svc/{i} line {n}" for n in range(600)] for i in range(3)}
    for name, messages in streams.items():
        put(logs, group, name, messages)
    args = (
        "download",
        "--group-prefix",
        prefix,
        "--dir",
        str(tmp_path),
        "--page-size",
        "40",
        "--get-rate",
        "12",
    )
    proc = start_cw(*args, endpoint=logs_endpoint)
    wait_for(lambda: events_written(tmp_path) >= 200, timeout=20, message="a partial download")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = events_written(tmp_path)
    assert 0 < partial < 1800, "the kill must land mid-way"
    # A crash between the write and the checkpoint leaves extra lines: simulate one.
    victim = tmp_path / stream_relpath(group, "svc/0", as_json=False)
    with open(victim, "a") as fh:
        fh.write("svc/0 line written but never recorded\n")
    out = run_cw(*args, endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    for name, messages in streams.items():
        assert lines_of(tmp_path, group, name) == messages
    # New events later: a third run appends exactly those.
    put(logs, group, "svc/1", ["svc/1 after"], start_ms=int(time.time() * 1000))
    out = run_cw(*args, endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    assert lines_of(tmp_path, group, "svc/1") == [*streams["svc/1"], "svc/1 after"]


def test_throttling_is_retried(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path, throttling_proxy: ThrottlingProxy
) -> None:
    group = prefix + "throttled"
    streams = {f"s{i}": [f"s{i}-{n}" for n in range(200)] for i in range(4)}
    for name, messages in streams.items():
        put(logs, group, name, messages)
    out = run_cw(
        "download", "--group-prefix", prefix, "--dir", str(tmp_path), "--page-size", "25",
        endpoint=throttling_proxy.url,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert throttling_proxy.throttled >= 5
    for name, messages in streams.items():
        assert lines_of(tmp_path, group, name) == messages
    daemon = collect_status(tmp_path)["daemon"]
    assert daemon["throttled"] == throttling_proxy.throttled


def test_follow_new_streams_sighup_reload_and_status(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    one, two = prefix + "one", prefix + "two"
    put(logs, one, "web", ["one-web-0"])
    put(logs, two, "web", ["two-web-0"])
    config = tmp_path / "cw.yaml"
    config.write_text(f"group_prefix: {one}\ndiscover_interval: 0.3\npoll_interval: 0.2\n")
    out_dir = tmp_path / "out"
    proc = start_cw(
        "download", "--config", str(config), "--dir", str(out_dir), "--follow", "--status-port", "0",
        endpoint=logs_endpoint,
    )  # fmt: skip
    try:
        wait_for(lambda: len(data_files(out_dir)) == 1, timeout=20, message="the first stream")
        put(logs, one, "api/new", ["one-api-0"], start_ms=int(time.time() * 1000))
        wait_for(
            lambda: (
                (out_dir / stream_relpath(one, "api/new", as_json=False)).exists()
                and lines_of(out_dir, one, "api/new") == ["one-api-0"]
            ),
            timeout=20,
            message="a stream created after the daemon started",
        )
        put(logs, one, "web", ["one-web-1"], start_ms=int(time.time() * 1000))
        wait_for(
            lambda: lines_of(out_dir, one, "web") == ["one-web-0", "one-web-1"],
            timeout=20,
            message="new events",
        )

        # SIGHUP: a wider prefix and a stream filter, without a restart.
        config.write_text(
            f"group_prefix: {prefix}\nstream_regex: ^web$\ndiscover_interval: 0.3\npoll_interval: 0.2\n"
        )
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (
                (out_dir / stream_relpath(two, "web", as_json=False)).exists()
                and lines_of(out_dir, two, "web") == ["two-web-0"]
            ),
            timeout=20,
            message="the group added by the reloaded prefix",
        )
        # The reloaded regex no longer selects one:api/new: it is let go, web goes on.
        now = int(time.time() * 1000)
        put(logs, one, "api/new", ["one-api-1"], start_ms=now)
        put(logs, one, "web", ["one-web-2"], start_ms=now)
        wait_for(
            lambda: lines_of(out_dir, one, "web")[-1:] == ["one-web-2"],
            timeout=20,
            message="new events after the reload",
        )
        assert lines_of(out_dir, one, "api/new") == ["one-api-0"]

        # Status: the command and the HTTP port agree, and the daemon is alive.
        status = run_cw("status", "--dir", str(out_dir), "--json", endpoint=logs_endpoint)
        doc = json.loads(status.stdout)
        assert doc["alive"] is True
        assert doc["daemon"]["pid"] == proc.pid
        by_key = {(s["group"], s["stream"]): s for s in doc["streams"]}
        assert by_key[(one, "web")]["events"] == 3
        assert by_key[(one, "web")]["lag_s"] >= 0
        assert by_key[(one, "web")]["file_size"] == len("one-web-0\none-web-1\none-web-2\n")
        port = doc["daemon"]["status_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            live = json.loads(resp.read())
        assert live["alive"] is True
        assert {(s["group"], s["stream"]) for s in live["streams"]} == set(by_key)
        human = run_cw("status", "--dir", str(out_dir), endpoint=logs_endpoint)
        assert "running" in human.stdout
        assert one in human.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "reloaded" in stderr
    assert "new stream" in stderr
    doc = json.loads(
        run_cw("status", "--dir", str(out_dir), "--json", endpoint=logs_endpoint).stdout
    )
    assert doc["alive"] is False


def test_environment_names_of_the_original_tool(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "env"
    for name in ("keep-1", "keep-2", "skip"):
        put(logs, group, name, [name])
    out = run_cw(
        "download", endpoint=logs_endpoint,
        AWS_LOGS_DIRECTORY=str(tmp_path), LOG_GROUP_NAME_PREFIX=prefix, LOG_STREAMS_FILTER="keep-1,keep-2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(data_files(tmp_path)) == 2
    assert lines_of(tmp_path, group, "keep-2") == ["keep-2"]


def test_usage_errors_are_one_line(logs_endpoint: str, tmp_path: Path) -> None:
    out = run_cw(
        "download",
        "--group-prefix",
        "/x",
        "--dir",
        str(tmp_path),
        "--streams",
        "a",
        "--stream-regex",
        "b",
        endpoint=logs_endpoint,
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("group_prefx: /x\n")
    out = run_cw("download", "--config", str(bad), "--dir", str(tmp_path), endpoint=logs_endpoint)
    assert out.returncode == 2
    assert "group_prefx" in out.stderr
    out = run_cw("status", "--dir", str(tmp_path / "nowhere"), endpoint=logs_endpoint)
    assert out.returncode == 2


def test_two_downloaders_on_one_dir_write_each_stream_once(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "pair"
    streams = {f"s{i}": [f"s{i} line {n}" for n in range(150)] for i in range(6)}
    for name, messages in streams.items():
        put(logs, group, name, messages)
    args = (
        "download", "--group-prefix", prefix, "--dir", str(tmp_path), "--follow",
        "--page-size", "20", "--get-rate", "20", "--discover-interval", "0.3",
        "--poll-interval", "0.2",
    )  # fmt: skip
    first, second = start_cw(*args, endpoint=logs_endpoint), start_cw(*args, endpoint=logs_endpoint)
    try:
        wait_for(
            lambda: all(
                (tmp_path / stream_relpath(group, n, as_json=False)).exists()
                and len(lines_of(tmp_path, group, n)) == 150
                for n in streams
            ),
            timeout=30,
            message="every stream downloaded",
        )
        assert len(collect_status(tmp_path)["daemons"]) == 2
        # One of them dies: the other takes its streams over (its process is gone).
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        now = int(time.time() * 1000)
        for name, messages in streams.items():
            put(logs, group, name, [f"{name} later"], start_ms=now)
            messages.append(f"{name} later")
        wait_for(
            lambda: all(lines_of(tmp_path, group, n)[-1:] == [f"{n} later"] for n in streams),
            timeout=30,
            message="the survivor following every stream",
        )
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
    assert second.returncode == 0
    for name, messages in streams.items():
        assert lines_of(tmp_path, group, name) == messages


def write_earlier_state(
    logs: Any, endpoint: str, root: Path, group: str, stream: str, read: int, extra: str
) -> None:
    """Make ``root`` look like an earlier version's download of ``read`` events of ``stream``
    (its data file, and ``.logferry/streams/HASH.json`` as ``StateStore.save`` wrote it),
    killed after writing ``extra`` but before saving the state."""
    reader = StreamReader(_client(endpoint), group, stream, StreamCursor(), page_size=read)
    page = reader.read()
    assert len(page.events) == read
    data = "".join(e["message"] + "\n" for e in page.events).encode()
    relpath = stream_relpath(group, stream, as_json=False)
    (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    (root / relpath).write_bytes(data + extra.encode())
    (created,) = [
        s["creationTime"]
        for s in logs.describe_log_streams(logGroupName=group)["logStreams"]
        if s["logStreamName"] == stream
    ]
    cursor = page.cursor
    state = {
        "group": group,
        "stream": stream,
        "file": relpath,
        "cursor": {
            "token": cursor.token,
            "start": cursor.start,
            "last_ts": cursor.last_ts,
            "at_last_ts": cursor.at_last_ts,
        },
        "events": read,
        "size": len(data),
        "last_event_ms": page.events[-1]["timestamp"],
        "updated_ms": int(time.time() * 1000),
        "created_ms": created,
    }
    name = hashlib.sha256(f"{group}\0{stream}".encode()).hexdigest()[:16]
    folder = root / ".logferry" / "streams"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))


def _client(endpoint: str) -> Any:
    from logferry.cloudwatch.client import LogsClient

    return LogsClient(endpoint_url=endpoint, region="us-east-1")


def test_state_files_of_an_earlier_version_move_into_the_ledger(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "old"
    streams = {f"a/{i}": [f"a/{i} line {n}" for n in range(120)] for i in range(3)}
    for name, messages in streams.items():
        put(logs, group, name, messages)
    # Killed mid-way: a line past the saved size, as a crash between write and save leaves.
    for i, name in enumerate(streams):
        write_earlier_state(
            logs, logs_endpoint, tmp_path, group, name, 30 + 10 * i, extra=f"{name} torn"
        )
    (tmp_path / ".logferry" / "lock").touch()
    before = run_cw("status", "--dir", str(tmp_path), endpoint=logs_endpoint)
    assert "3 streams have the state files of an earlier version" in before.stdout
    args = ("download", "--group-prefix", prefix, "--dir", str(tmp_path))
    out = run_cw(*args, endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    assert "moved the state of 3 streams" in out.stderr
    for name, messages in streams.items():
        assert lines_of(tmp_path, group, name) == messages
    # Only the events after the saved cursors were read again.
    assert "downloaded 240 events" in out.stderr
    folder = tmp_path / ".logferry" / "streams"
    assert not list(folder.glob("*.json"))
    assert len(list(folder.glob("*.json.migrated"))) == 3
    by_key = {s["stream"]: s for s in collect_status(tmp_path)["streams"]}
    assert {k: v["events"] for k, v in by_key.items()} == {n: 120 for n in streams}
    # Once only: a second run finds nothing new and moves nothing.
    out = run_cw(*args, endpoint=logs_endpoint)
    assert out.returncode == 0, out.stderr
    assert "moved" not in out.stderr
    assert "downloaded 0 events" in out.stderr
    for name, messages in streams.items():
        assert lines_of(tmp_path, group, name) == messages
