"""SIGINT / SIGTERM: stop taking work, checkpoint what is in flight, exit in bounded time."""

from __future__ import annotations

import collections
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.conftest import run_cli
from tests.runner.test_crash import make_bucket, wait_for_checkpoint


def start(src: Path, led: Path, sink: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "logferry", "ship", str(src), "--to", sink, "--ledger", str(led),
         "--batch-bytes", "4096", "--workers", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_checkpoints_and_resumes(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = make_bucket(tmp_path, 1, 20_000)
    led = tmp_path / "l.db"
    mezmo.delay = 0.02
    proc = start(src, led, mezmo.url)
    wait_for_checkpoint(led, proc, 1000)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - began < 5
    assert proc.returncode == 1
    assert "SIGTERM" in stderr
    assert "interrupted" in stderr
    with sqlite3.connect(led) as conn:
        status, position = conn.execute("SELECT status, position FROM objects").fetchone()
    assert status == "pending"
    assert 1000 <= position < 20_000
    # everything acknowledged before the signal is in the ledger: the rerun adds no duplicate
    received = len(mezmo.lines)
    assert received == position
    mezmo.delay = 0
    p = run_cli("ship", str(src), "--to", mezmo.url, "--ledger", str(led))
    assert p.returncode == 0, p.stderr
    counts = collections.Counter(orjson.loads(x["line"])["n"] for x in mezmo.lines)
    assert set(counts) == set(range(20_000))
    assert max(counts.values()) == 1


def test_shutdown_timeout_bounds_a_hanging_sink(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = make_bucket(tmp_path, 1, 5_000)
    led = tmp_path / "l.db"
    mezmo.delay = 60  # every request hangs
    proc = start(src, led, mezmo.url, "--shutdown-timeout", "1")
    time.sleep(1.5)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - began < 5
    assert proc.returncode == 1
    assert "still busy after 1 s" in stderr
    with sqlite3.connect(led) as conn:  # still a valid ledger, nothing acknowledged
        assert conn.execute("SELECT position FROM objects").fetchone() == (0,)
    mezmo.delay = 0


def test_second_sigint_exits_at_once(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = make_bucket(tmp_path, 1, 5_000)
    led = tmp_path / "l.db"
    mezmo.delay = 60
    proc = start(src, led, mezmo.url)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - began < 3
    assert proc.returncode == 1
    assert "second interrupt" in stderr
    with sqlite3.connect(led) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    mezmo.delay = 0
