"""Crash safety and concurrency with real processes: kill -9, reruns, two shippers at once."""

from __future__ import annotations

import collections
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import run_cli
from tests.helpers import wait_for
from tests.runner.test_ship import ndjson_object, read_jsonl

LINES = 30_000


def make_bucket(root: Path, objects: int, lines: int) -> Path:
    src = root / "bucket"
    src.mkdir()
    for i in range(objects):
        (src / f"obj{i:03d}.ndjson.gz").write_bytes(ndjson_object(lines, i * lines))
    return src


def start_ship(src: Path, led: Path, *sink_args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logferry",
            "ship",
            str(src),
            *sink_args,
            "--ledger",
            str(led),
            "--workers",
            "1",
            "--batch-bytes",
            "2048",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_checkpoint(led: Path, proc: subprocess.Popen[bytes], minimum: int) -> int:
    """Poll the ledger until an object is mid-way (a checkpoint inside it); return its position."""

    def checkpoint() -> int:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with sqlite3.connect(led, timeout=5) as conn:
                row = conn.execute(
                    "SELECT max(position) FROM objects WHERE status = 'active'"
                ).fetchone()
        except sqlite3.OperationalError:
            row = None
        return int(row[0]) if row and row[0] and row[0] >= minimum else 0

    return wait_for(checkpoint, timeout=60, message="no checkpoint seen")


def test_kill_9_file_sink_is_exactly_once(tmp_path: Path) -> None:
    src = make_bucket(tmp_path, 3, LINES)
    led, out = tmp_path / "l.db", tmp_path / "out"
    for round_ in range(3):
        proc = start_ship(src, led, "--to", str(out))
        wait_for_checkpoint(led, proc, 500 + round_ * 3000)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    p = run_cli("ship", str(src), "--to", str(out), "--ledger", str(led), "--json")
    assert p.returncode == 0, p.stderr
    summary = orjson.loads(p.stdout.splitlines()[-1])
    assert summary["lines"] < 3 * LINES  # it resumed inside objects instead of starting over
    for i in range(3):
        ns = [orjson.loads(r["line"])["n"] for r in read_jsonl(out / f"obj{i:03d}.ndjson.gz.jsonl")]
        assert ns == list(range(i * LINES, (i + 1) * LINES))
    assert not list(out.rglob("*.partial"))


def test_kill_9_mezmo_at_least_once_with_bounded_duplicates(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = make_bucket(tmp_path, 2, LINES)
    led = tmp_path / "l.db"
    proc = start_ship(src, led, "--to", mezmo.url)
    position = wait_for_checkpoint(led, proc, 2000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert position < LINES
    p = run_cli("ship", str(src), "--to", mezmo.url, "--ledger", str(led), "--batch-bytes", "2048")
    assert p.returncode == 0, p.stderr
    counts = collections.Counter(orjson.loads(x["line"])["n"] for x in mezmo.lines)
    assert set(counts) == set(range(2 * LINES))  # nothing lost
    duplicates = sum(c - 1 for c in counts.values())
    # at most the batch in flight when the process died (2048 bytes of ~40-byte lines)
    assert duplicates <= 2048 // 30, duplicates


def test_two_processes_never_ship_the_same_object(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = make_bucket(tmp_path, 40, 200)
    led = tmp_path / "l.db"
    procs = [start_ship(src, led, "--to", mezmo.url) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    counts = collections.Counter(orjson.loads(x["line"])["n"] for x in mezmo.lines)
    assert set(counts) == set(range(40 * 200))
    assert max(counts.values()) == 1
    with sqlite3.connect(led) as conn:
        assert (
            conn.execute("SELECT count(*) FROM objects WHERE status = 'done'").fetchone()[0] == 40
        )
        assert conn.execute("SELECT max(attempts) FROM objects").fetchone()[0] == 1
