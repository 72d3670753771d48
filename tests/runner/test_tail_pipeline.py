"""Tailing files through the CLI: resume, crash leftovers, rotation while stopped, follow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.conftest import run_cli
from tests.helpers import wait_for


def out_rows(out: Path) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for p in sorted(out.rglob("*.jsonl")):
        rows.extend(orjson.loads(x) for x in p.read_bytes().splitlines())
    return rows


def test_tail_resumes_cuts_torn_output_and_survives_rename(tmp_path: Path) -> None:
    logs, out, led = tmp_path / "logs", tmp_path / "out", tmp_path / "l.db"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("".join(f"line {i}\n" for i in range(5)) + "partial")
    src = f"tail://{logs}/app.log*"
    args = ["ship", src, "--to", str(out), "--ledger", str(led), "--json"]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["lines"] == 5  # never the partial line
    with app.open("a") as f:
        f.write(" done\nline 6\n")
    p = run_cli(*args)
    assert json.loads(p.stdout.splitlines()[-1])["lines"] == 2
    (target,) = list(out.rglob("*.jsonl"))
    # a crash after a write but before the checkpoint leaves records the ledger never saw
    with target.open("ab") as f:
        f.write(b'{"position":7,"timestamp":"x","line":"not acknowledged"}\n{"posit')
    p = run_cli(*args)  # the next run cuts the output back to what the ledger acknowledged
    assert p.returncode == 0
    assert json.loads(p.stdout.splitlines()[-1])["lines"] == 0
    assert [orjson.loads(x)["position"] for x in target.read_bytes().splitlines()] == list(range(7))
    # a crash leaves an unacknowledged record and a torn line, then the file is rotated
    # while nobody runs: the renamed file carries on from its cursor under its new name,
    # and the old name's output is cut back to what the ledger acknowledged
    with app.open("a") as f:
        f.write("line 7\n")
    with target.open("ab") as f:
        f.write(b'{"position":7,"timestamp":"x","line":"line 7"}\n{"posit')
    app.rename(logs / "app.log.1")
    (logs / "app.log").write_text("new 0\nnew 1\n")
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    lines = [r["line"] for r in out_rows(out)]
    assert sorted(lines) == sorted(
        ["line 0", "line 1", "line 2", "line 3", "line 4", "partial done", "line 6", "line 7",
         "new 0", "new 1"]
    )  # fmt: skip
    assert "not acknowledged" not in lines
    assert [orjson.loads(x)["position"] for x in target.read_bytes().splitlines()] == list(range(7))


def test_follow_ships_appends_until_sigterm(tmp_path: Path) -> None:
    logs, out, led = tmp_path / "logs", tmp_path / "out", tmp_path / "l.db"
    logs.mkdir()
    (logs / "a.log").write_text("old\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "ship", f"tail://{logs}/*.log", "--to", str(out),
         "--ledger", str(led), "--follow", "--from", "end", "--batch-wait", "0.05", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        time.sleep(1.5)
        with (logs / "a.log").open("a") as f:
            f.write("fresh 1\n")
        (logs / "b.log").write_text("b 1\n")  # a new file is read from its beginning
        wait_for(lambda: len(out_rows(out)) >= 2, timeout=15, message="the appended lines")
    finally:
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert sorted(r["line"] for r in out_rows(out)) == ["b 1", "fresh 1"]  # not "old"


def test_first_line_of_a_rotated_in_file_ships_within_two_seconds(tmp_path: Path) -> None:
    logs, out, led = tmp_path / "logs", tmp_path / "out", tmp_path / "l.db"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("before\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "ship", f"tail://{logs}/*.log", "--to", str(out),
         "--ledger", str(led), "--follow", "--batch-wait", "0.05", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        wait_for(lambda: len(out_rows(out)) == 1, timeout=15, message="the first file")
        for i in range(3):
            # logrotate's rename + create, then the writer's first line in the new file
            app.rename(logs / f"app.log.{i}")
            app.touch()
            with app.open("a") as f:
                f.write(f"rotated {i}\n")
            wait_for(
                lambda: f"rotated {i}" in [r["line"] for r in out_rows(out)],  # noqa: B023
                timeout=2.0,
                message=f"the first line of rotation {i}",
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert sorted(r["line"] for r in out_rows(out)) == [
        "before", "rotated 0", "rotated 1", "rotated 2"
    ]  # fmt: skip


def test_a_second_runner_says_who_holds_the_files(tmp_path: Path) -> None:
    logs, led = tmp_path / "logs", tmp_path / "l.db"
    logs.mkdir()
    (logs / "a.log").write_text("a\n")
    (logs / "b.log").write_text("b\n")
    common = [f"tail://{logs}/*.log", "--ledger", str(led), "--batch-wait", "0.05"]
    first = subprocess.Popen(
        [sys.executable, "-m", "logferry", "ship", *common, "--to", str(tmp_path / "o1"),
         "--follow", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        wait_for(lambda: len(out_rows(tmp_path / "o1")) == 2, timeout=15, message="first runner")
        from logferry.ledger import SQLiteLedger

        ledger = SQLiteLedger(led, create=False)
        (owner,) = {e.owner for e in ledger.entries()}
        ledger.close()
        p = run_cli("ship", *common, "--to", str(tmp_path / "o2"))
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert p.returncode == 0, p.stderr
    assert f"2 files held by another runner ({owner}); none left for this one" in p.stderr
    assert not out_rows(tmp_path / "o2")


def test_two_runners_never_both_read_a_renamed_file(tmp_path: Path) -> None:
    """Runner A follows app.log; it is renamed to app.log.1 and keeps growing (a logger
    still writing through its open file). Runner B, listing the same directory on the same
    ledger, must leave app.log.1 to A, which reads it through the open file."""
    import threading

    from logferry.config import ShipOptions
    from logferry.ledger import SQLiteLedger
    from logferry.records import Batch
    from logferry.sinks.base import Sink
    from logferry.sources.tail import TailSource
    from tests.shipping import stream_runner

    class Lines(Sink):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write(self, batch: Batch) -> None:
            self.lines.extend(batch.lines)

    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("".join(f"old {i}\n" for i in range(50)))
    ledger = SQLiteLedger(tmp_path / "l.db")
    opts = ShipOptions(batch_wait=0.05, lease_seconds=30)
    glob = f"{logs}/app.log*"
    a_sink, b_sink = Lines(), Lines()
    stop_a, stop_b = threading.Event(), threading.Event()
    runner_a = stream_runner(
        TailSource(glob, rotate_wait=30.0), [a_sink], ledger, opts, stop=stop_a,
        discover_interval=0.1,
    )  # fmt: skip
    thread_a = threading.Thread(target=runner_a.run)
    thread_a.start()
    try:
        wait_for(lambda: len(a_sink.lines) >= 50, message="runner A reading app.log")
        with app.open("a") as writer:  # the logger's open file
            app.rename(logs / "app.log.1")
            writer.write("".join(f"old {i}\n" for i in range(50, 60)))
        (logs / "app.log").write_text("new 0\n")
        source_b = TailSource(glob, rotate_wait=30.0)
        listings = [0]  # runner B's listings of the directory, each a chance to take app.log.1
        list_b = source_b.partitions

        def counted():  # type: ignore[no-untyped-def]
            listings[0] += 1
            return list_b()

        source_b.partitions = counted  # type: ignore[method-assign]
        runner_b = stream_runner(
            source_b, [b_sink], ledger, opts, stop=stop_b, discover_interval=0.1,
        )  # fmt: skip
        thread_b = threading.Thread(target=runner_b.run)
        thread_b.start()
        wait_for(lambda: len(a_sink.lines) + len(b_sink.lines) >= 61, message="all 61 lines")
        # Room for a duplicate to show up: B lists the directory three more times, and what
        # it has read (were it app.log.1) has reached its sink.
        seen = listings[0]
        wait_for(
            lambda: listings[0] >= seen + 3 and not runner_b._pending(),
            message="three more listings by runner B, all it read delivered",
        )
    finally:
        stop_b.set()
        stop_a.set()
        thread_a.join(10)
        if "thread_b" in locals():
            thread_b.join(10)
        ledger.close()
    shipped = a_sink.lines + b_sink.lines
    assert sorted(shipped) == sorted([f"old {i}" for i in range(60)] + ["new 0"])
    assert not any(line.startswith("old") for line in b_sink.lines)


def test_an_empty_match_warns_with_what_was_looked_up(tmp_path: Path) -> None:
    args = ["--to", str(tmp_path / "out"), "--ledger", str(tmp_path / "l.db")]
    p = run_cli("ship", f"tail://{tmp_path}/nope/*.log", *args)
    assert p.returncode == 0, p.stderr
    assert f"no file matches {tmp_path}/nope/*.log: the folder {tmp_path}/nope does not exist" in (
        p.stderr
    )
    (tmp_path / "a.log").write_text("no newline yet")
    p = run_cli("ship", f"tail://{tmp_path}/*.log", *args)
    assert "1 files match" not in p.stderr and "none with a complete first line" in p.stderr
