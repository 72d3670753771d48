"""Chaos for workers: competing worker processes, one killed with SIGKILL every few seconds.

Every line is unique (object key and line number), so what the sinks received says exactly
what was lost and what was duplicated. The file sink must hold every line exactly once
(it is exactly-once on replay); the Mezmo test server must have lost nothing, and its
duplicates are bounded by what the killed workers had in flight.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logferry.ledger import Status, open_ledger
from tests.helpers import wait_for

OBJECTS = 300
LINES = 10
WORKERS = 3
CONCURRENCY = 4


@dataclass
class ChaosReport:
    """What a chaos run measured."""

    killed: int = 0
    lost_files: int = 0
    duplicated_files: int = 0
    lost_mezmo: int = 0
    duplicated_mezmo: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duplicate_bound(self) -> int:
        """Lines a killed worker may have had delivered but not yet recorded: its messages
        in hand, each one object, the whole object at most."""
        return self.killed * CONCURRENCY * LINES


def upload(s3: Any, bucket: str) -> list[str]:
    """``OBJECTS`` small NDJSON objects with unique lines; their keys."""
    keys = [f"logs/{i:04d}.json" for i in range(OBJECTS)]
    for key in keys:
        body = "".join(json.dumps({"key": key, "n": n}) + "\n" for n in range(LINES))
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    return keys


def _counts(pairs: list[tuple[str, int]], keys: list[str]) -> tuple[int, int]:
    seen = collections.Counter(pairs)
    expected = {(k, n) for k in keys for n in range(LINES)}
    lost = len(expected - set(seen))
    duplicated = sum(c - 1 for c in seen.values() if c > 1)
    return lost, duplicated


def run_chaos(
    *,
    tmp_path: Path,
    config: Path,
    queue: str,
    keys: list[str],
    source_id: str,
    ledger_url: str,
    mezmo: Any,
    out: Path,
    kill_every: float = 2.5,
    timeout: float = 85.0,
    seed: int = 14,
    extra_args: tuple[str, ...] = (),
) -> ChaosReport:
    """Run ``WORKERS`` worker processes until the ledger has every key done, killing one
    at random every ``kill_every`` seconds (and starting a new one in its place)."""
    rng = random.Random(seed)
    report = ChaosReport()
    logs = tmp_path / "worker-logs"
    logs.mkdir(exist_ok=True)
    started = 0

    def start() -> subprocess.Popen[bytes]:
        nonlocal started
        started += 1
        with open(logs / f"worker-{started}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "logferry", "worker", "-c", str(config), "--queue", queue,
                 "--concurrency", str(CONCURRENCY), "--visibility-timeout", "3",
                 "--shutdown-timeout", "5", *extra_args],
                stdout=subprocess.DEVNULL, stderr=log, env=os.environ.copy(),
            )  # fmt: skip

    ledger = open_ledger(ledger_url)

    def done() -> int:
        return sum(1 for e in ledger.entries(source=source_id) if e.status == Status.DONE)

    began = time.monotonic()
    workers = [start() for _ in range(WORKERS)]
    try:
        # The first kill comes early (the workers have just started): a fast machine may
        # finish in a few kill intervals.
        next_kill = time.monotonic() + min(1.5, kill_every)
        while done() < len(keys):
            if time.monotonic() - began > timeout:
                raise AssertionError(
                    f"after {timeout:g} s only {done()} of {len(keys)} objects are done "
                    f"({report.killed} kills); worker logs in {logs}"
                )
            if time.monotonic() >= next_kill:
                victim = rng.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                report.killed += 1
                workers[victim] = start()
                next_kill = time.monotonic() + kill_every
            time.sleep(0.1)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        ledger.close()
    report.seconds = time.monotonic() - began
    files = [
        (r["key"], r["n"])
        for path in sorted(out.rglob("*.jsonl"))
        for r in (json.loads(json.loads(row)["line"]) for row in path.read_text().splitlines())
    ]
    report.lost_files, report.duplicated_files = _counts(files, keys)

    def mezmo_pairs() -> list[tuple[str, int]]:
        return [(r["key"], r["n"]) for r in (json.loads(e["line"]) for e in mezmo.lines)]

    wait_for(lambda: _counts(mezmo_pairs(), keys)[0] == 0, timeout=5, message="mezmo lost lines")
    report.lost_mezmo, report.duplicated_mezmo = _counts(mezmo_pairs(), keys)
    print(
        f"\nchaos: {report.killed} workers killed in {report.seconds:.1f} s; files: lost "
        f"{report.lost_files}, duplicated {report.duplicated_files}; mezmo: lost "
        f"{report.lost_mezmo}, duplicated {report.duplicated_mezmo} "
        f"(bound {report.duplicate_bound})"
    )
    return report


def check(report: ChaosReport, record: Callable[[str, object], None]) -> None:
    """Record the counts on the test report, then hold them to the promise: workers were
    killed, nothing was lost anywhere, the file sink has no duplicate, and Mezmo's stay
    within the batches that were in flight."""
    for name in ("killed", "lost_files", "duplicated_files", "lost_mezmo", "duplicated_mezmo"):
        record(name, getattr(report, name))
    assert report.killed >= 2
    assert report.lost_files == 0
    assert report.duplicated_files == 0
    assert report.lost_mezmo == 0
    assert report.duplicated_mezmo <= report.duplicate_bound
