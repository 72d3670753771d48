"""``logferry run`` as a daemon: idle cycles print nothing, ``-v`` shows every cycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_for


def _start(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], Path, Path]:
    bucket, out = tmp_path / "bucket", tmp_path / "out"
    bucket.mkdir()
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\ninterval: 0.2\n"
        f"sinks:\n  f: {{url: 'file://{out}'}}\n"
        f"sources:\n  local: {{url: '{bucket}', sinks: [f]}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", *flags, "run", "-c", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    return proc, bucket, out


def _outputs(out: Path) -> int:
    return sum(1 for _ in out.rglob("*.jsonl")) if out.exists() else 0


def _stop(proc: subprocess.Popen[str]) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    return [line for line in stderr.splitlines() if line.startswith("shipped ")]


def test_idle_cycles_print_no_summary(tmp_path: Path) -> None:
    proc, bucket, out = _start(tmp_path)
    try:
        (bucket / "a.log").write_text("one\n")
        wait_for(lambda: _outputs(out) == 1, timeout=20, message="the first file")
        (bucket / "b.log").write_text("two\n")  # shipped some idle cycles later
        wait_for(lambda: _outputs(out) == 2, timeout=20, message="the second file")
    finally:
        summaries = _stop(proc)
    assert len(summaries) == 2, summaries
    assert all(s.startswith("shipped 1 object, 1 line ") for s in summaries), summaries


def test_verbose_prints_every_cycle(tmp_path: Path) -> None:
    proc, _bucket, _out = _start(tmp_path, "-v")
    try:
        assert proc.stderr is not None
        seen: list[str] = []

        def two_idle_summaries() -> bool:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if line.startswith("shipped 0 objects"):
                seen.append(line)
            return len(seen) >= 2

        wait_for(two_idle_summaries, timeout=20, interval=0, message="idle cycle summaries")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
