"""``--processes N``: copies of ``ship`` and ``run`` sharing a bucket and a ledger, for real:
moto's S3 server, the Mezmo test server and the file sink, several OS processes."""

from __future__ import annotations

import collections
import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import run_cli
from tests.helpers import wait_for
from tests.ledger.conftest import pg_admin, pg_url  # noqa: F401 - fixtures
from tests.runner.test_ship import all_out_lines

OBJECTS, LINES = 40, 300


def ndjson(start: int, n: int) -> bytes:
    rows = (
        orjson.dumps({"timestamp": "2026-01-01T00:00:00Z", "n": i}) for i in range(start, start + n)
    )
    return gzip.compress(b"\n".join(rows) + b"\n")


def fill(s3: Any, bucket: str, objects: int = OBJECTS, lines: int = LINES) -> None:
    for i in range(objects):
        s3.put_object(
            Bucket=bucket, Key=f"logs/obj{i:03d}.ndjson.gz", Body=ndjson(i * lines, lines)
        )


def summary(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON summary of a run (the last line of stdout)."""
    lines = p.stdout.splitlines()
    assert lines, p.stderr
    return orjson.loads(lines[-1])  # type: ignore[no-any-return]


def shipped_by(stderr: str) -> dict[str, list[str]]:
    """Each object key and the processes that logged shipping it (``--log-format json -v``)."""
    by: dict[str, list[str]] = collections.defaultdict(list)
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        doc = orjson.loads(line)
        if doc.get("message", "").startswith("shipped "):
            key = doc["message"].removeprefix("shipped ").rpartition(":")[0]
            by[key].append(doc["process"])
    return by


def ship_args(bucket: str, s3_endpoint: str, led: str, *more: str) -> list[str]:
    return ["ship", f"s3://{bucket}/logs/", "--endpoint-url", s3_endpoint, "--ledger", led, *more]


def test_three_processes_ship_every_line_once(s3, bucket, s3_endpoint, mezmo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fill(s3, bucket)
    led = f"sqlite:///{tmp_path}/l.db"
    args = ship_args(bucket, s3_endpoint, led, "--to", mezmo.url, "--processes", "3", "--json")
    p = run_cli("--log-format", "json", "-v", *args)
    assert p.returncode == 0, p.stderr
    counts = collections.Counter(orjson.loads(x["line"])["n"] for x in mezmo.lines)
    assert set(counts) == set(range(OBJECTS * LINES))
    assert max(counts.values()) == 1
    by = shipped_by(p.stderr)
    assert len(by) == OBJECTS
    assert all(len(processes) == 1 for processes in by.values()), by
    with sqlite3.connect(tmp_path / "l.db") as conn:
        attempts = conn.execute("SELECT max(attempts), count(*) FROM objects").fetchone()
    assert attempts == (1, OBJECTS)  # every object claimed once: by one process
    result = summary(p)
    assert (result["objects"], result["lines"], result["skipped"]) == (OBJECTS, OBJECTS * LINES, 0)
    assert len(p.stdout.splitlines()) == 1  # one summary, not one per process


def test_postgres_ledger_shared_by_two_processes(s3, bucket, s3_endpoint, pg_url, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    fill(s3, bucket, objects=12)
    out = tmp_path / "out"
    args = ship_args(bucket, s3_endpoint, pg_url, "--to", f"file://{out}", "--processes", "2")
    p = run_cli(*args, "--json")
    assert p.returncode == 0, p.stderr
    assert summary(p)["objects"] == 12
    ns = sorted(orjson.loads(r["line"])["n"] for r in all_out_lines(out))
    assert ns == list(range(12 * LINES))


def test_a_failed_object_fails_the_run_once(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fill(s3, bucket, objects=6)
    s3.put_object(Bucket=bucket, Key="logs/broken.ndjson.gz", Body=b"\x1f\x8b\x08\x00broken")
    led = f"sqlite:///{tmp_path}/l.db"
    args = ship_args(bucket, s3_endpoint, led, "--to", f"file://{tmp_path}/out", "--json")
    p = run_cli(*args, "--processes", "2", "--max-attempts", "1")
    assert p.returncode == 1, p.stderr
    result = summary(p)
    assert [f["key"] for f in result["failed"]] == ["logs/broken.ndjson.gz"]
    assert result["objects"] == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--processes", "0"), "--processes"),
        (("--processes", "-2"), "--processes"),
        (("--processes", "2", "--to", "nosuch://x"), "nosuch://x"),
        (("--processes", "2", "--to", "-"), "stdout sink"),
        (("--processes", "2", "--to", "stdout://"), "stdout sink"),
        (("--processes", "2", "--metrics-port", "0"), "--metrics-port"),
        (("--processes", "2", "--key", "a.log"), "--key"),
    ],
)
def test_usage_and_config_errors_exit_2_once(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    to = () if "--to" in args else ("--to", f"file://{tmp_path}/out")
    (tmp_path / "src").mkdir()
    led = f"sqlite:///{tmp_path}/l.db"
    p = run_cli("ship", str(tmp_path / "src"), *to, *args, "--ledger", led, timeout=30)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert p.stderr.count("rror") == 1  # said once, by the one process that checked


def start_slow_pair(  # type: ignore[no-untyped-def]
    s3, bucket, s3_endpoint, tmp_path
) -> tuple[subprocess.Popen[str], Path, Path, tuple[str, ...]]:
    """A bucket of 3,000-line objects and a slow ``ship --processes 2`` of it, started:
    (the process, its ledger file, its output dir, the ship arguments without the pacing)."""
    fill(s3, bucket, lines=3000)
    led, out = tmp_path / "l.db", tmp_path / "out"
    args = ship_args(bucket, s3_endpoint, f"sqlite:///{led}", "--to", f"file://{out}", "--json")
    slow = ("--workers", "1", "--batch-bytes", "2048", "--processes", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", *args, *slow],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, led, out, tuple(args)


def test_sigterm_mid_run_then_rerun_loses_and_repeats_nothing(
    s3, bucket, s3_endpoint, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    proc, led, out, args = start_slow_pair(s3, bucket, s3_endpoint, tmp_path)

    def two_objects_done() -> bool:
        assert proc.poll() is None, proc.communicate()
        with sqlite3.connect(led, timeout=5) as conn:
            try:
                done = conn.execute("SELECT count(*) FROM objects WHERE status = 'done'")
            except sqlite3.OperationalError:
                return False  # not created yet
            return int(done.fetchone()[0]) >= 2

    wait_for(two_objects_done, timeout=60, message="no object shipped")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    first = orjson.loads(stdout.splitlines()[-1])
    assert first["interrupted"] is True
    assert 2 <= first["objects"] < OBJECTS
    assert stderr.count("SIGTERM: stopping 2 processes") == 1
    p = run_cli(*args, "--processes", "2")
    assert p.returncode == 0, p.stderr
    assert first["objects"] + summary(p)["objects"] == OBJECTS
    ns = sorted(orjson.loads(r["line"])["n"] for r in all_out_lines(out))
    assert ns == list(range(OBJECTS * 3000))  # nothing lost, nothing twice


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()]


def test_a_killed_process_is_reported_and_the_others_work_kept(
    s3, bucket, s3_endpoint, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    proc, led, out, args = start_slow_pair(s3, bucket, s3_endpoint, tmp_path)
    children = wait_for(
        lambda: len(children_of(proc.pid)) == 2 and children_of(proc.pid), timeout=30
    )

    def checkpointed() -> bool:
        with sqlite3.connect(led, timeout=5) as conn:
            try:
                row = conn.execute("SELECT max(position) FROM objects").fetchone()
            except sqlite3.OperationalError:
                return False
            return bool(row[0])

    wait_for(checkpointed, timeout=60, message="nothing shipped")
    os.kill(children[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "was killed by SIGKILL" in stderr
    kept = orjson.loads(stdout.splitlines()[-1])["objects"]
    assert kept > 0  # the survivor's work is reported
    p = run_cli(*args)  # the dead process's claims: its PID is gone, so taken over at once
    assert p.returncode == 0, p.stderr
    ns = collections.Counter(orjson.loads(r["line"])["n"] for r in all_out_lines(out))
    assert set(ns) == set(range(OBJECTS * 3000))
    assert max(ns.values()) == 1


def start_daemon(cfg: Path) -> subprocess.Popen[str]:
    """``logferry run -c CFG --processes 2`` as a daemon."""
    return subprocess.Popen(
        [sys.executable, "-m", "logferry", "run", "-c", str(cfg), "--processes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cmdline(pid: int) -> list[str]:
    """A process's arguments."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_run_once_with_two_processes(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fill(s3, bucket, objects=10)
    s3.put_object(Bucket=bucket, Key="other/a.ndjson.gz", Body=ndjson(10**6, 50))
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\n"
        f"sinks: {{out: {{url: 'file://{tmp_path}/out'}}}}\n"
        "sources:\n"
        f"  logs:\n    url: s3://{bucket}/logs/\n    endpoint_url: {s3_endpoint}\n    sinks: [out]\n"
        f"  other:\n    url: s3://{bucket}/other/\n    endpoint_url: {s3_endpoint}\n    sinks: [out]\n"
    )
    p = run_cli("run", "-c", str(cfg), "--once", "--processes", "2", "--json")
    assert p.returncode == 0, p.stderr
    results = {r["source"]: r for r in map(orjson.loads, p.stdout.splitlines())}
    assert {s: (r["objects"], r["lines"]) for s, r in results.items()} == {
        f"s3://{bucket}/logs/": (10, 10 * LINES),
        f"s3://{bucket}/other/": (1, 50),
    }


def test_a_daemon_restarts_a_killed_process(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fill(s3, bucket, objects=4)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\ninterval: 0.2\n"
        f"sinks: {{out: {{url: 'file://{tmp_path}/out'}}}}\n"
        "sources:\n"
        f"  logs:\n    url: s3://{bucket}/logs/\n    endpoint_url: {s3_endpoint}\n    sinks: [out]\n"
    )
    proc = start_daemon(cfg)
    try:
        first = wait_for(
            lambda: len(children_of(proc.pid)) == 2 and children_of(proc.pid), timeout=30
        )
        # Both copies were forked: they still carry the supervisor's command line.
        assert all("--processes" in cmdline(pid) for pid in first)
        os.kill(first[0], signal.SIGKILL)
        again = wait_for(
            lambda: (now := children_of(proc.pid)) and len(now) == 2 and first[0] not in now
            and now,
            timeout=30,
            message="the killed process was not started again",
        )  # fmt: skip
        # The restarted one is a new program (the supervisor runs threads by then). Popen
        # forks before it execs: until then the new process still shows the supervisor's
        # command line, so wait for the exec rather than read it at once.
        (restarted,) = set(again) - set(first)
        wait_for(
            lambda: "--processes" not in cmdline(restarted), timeout=10,
            message="the restarted process was forked, not a new program",
        )  # fmt: skip
        # the new copy ships what arrives, its share included
        s3.put_object(Bucket=bucket, Key="logs/later.ndjson.gz", Body=ndjson(10**6, 7))
        wait_for(lambda: (tmp_path / "out" / "logs" / "later.ndjson.gz.jsonl").exists(), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert "was killed by SIGKILL" in stderr
    assert "restarting it in 1 s" in stderr
    assert "Traceback" not in stderr


def test_a_bad_pipeline_file_is_reported_once(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "sinks: {out: {url: 'nosuch://x'}}\nsources:\n  a:\n    url: /tmp\n    sinks: [out]\n"
    )
    p = run_cli("run", "-c", str(cfg), "--once", "--processes", "2", timeout=30)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("nosuch") == 1


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_pipeline_with_a_stdout_sink_takes_one_process(tmp_path: Path, command: str) -> None:
    """As ``ship --to -``: the copies' lines would interleave on stdout."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text("sinks: {out: {url: '-'}}\nsources:\n  a:\n    url: s3://b/\n    sinks: [out]\n")
    extra = ("--once",) if command == "run" else ("--queue", "sqs://q", "--stop-when-idle", "0")
    led = f"sqlite:///{tmp_path}/l.db"
    p = run_cli(command, "-c", str(cfg), *extra, "--processes", "2", "--ledger", led, timeout=30)
    assert p.returncode == 2, p.stderr
    assert "stdout sink" in p.stderr
    assert p.stderr.count("rror") == 1


def test_a_daemon_says_it_runs_once_not_once_per_process(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\ninterval: 60\n"
        f"sinks: {{out: {{url: 'file://{tmp_path}/out'}}}}\n"
        f"sources:\n  a:\n    url: {tmp_path / 'src'}\n    sinks: [out]\n"
    )
    proc = start_daemon(cfg)
    try:
        wait_for(lambda: len(children_of(proc.pid)) == 2, timeout=30)
        # both copies are past their start-up once the ledger has been opened by each
        wait_for(lambda: (tmp_path / "l.db").exists(), timeout=30)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stderr.count("running 1 source every 60 s in 2 processes") == 1, stderr


def test_a_failed_object_is_retried_once_per_run_not_once_per_process(tmp_path: Path) -> None:
    """The copies' passes start at different instants: the one whose share a failed object
    is in retries it, the other leaves it (it would spend two attempts and say so twice)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.ndjson.gz").write_bytes(gzip.compress(b'{"a": 1}\n')[:-6])
    led = tmp_path / "l.db"
    args = ("ship", str(src), "--to", f"file://{tmp_path}/out", "--ledger", f"sqlite:///{led}")
    runs = 3
    for _ in range(runs):
        p = run_cli(*args, "--processes", "2", timeout=30)
        assert p.returncode == 1, p.stderr
        assert p.stderr.count("failed broken.ndjson.gz") == 1, p.stderr
    with sqlite3.connect(led) as db:
        (attempts,) = db.execute("SELECT attempts FROM objects").fetchone()
    assert attempts == runs
