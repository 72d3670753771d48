"""What commands print off a terminal: the right units, whole lines (no 80-column cut)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import run_cli
from tests.helpers import wait_for


def test_bucket_progress_and_summary_count_objects(
    s3,
    bucket: str,
    s3_endpoint: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    s3.put_object(Bucket=bucket, Key="a.log", Body=b"x\n")
    p = run_cli("ship", f"s3://{bucket}/", "--endpoint-url", s3_endpoint, "--to",
                str(tmp_path / "o"), "--ledger", str(tmp_path / "l.db"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "listing found 1 object to ship" in p.stderr
    assert "shipped 1 object, 1 line " in p.stderr


def test_tail_progress_counts_files_and_lines_are_whole(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("first\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "ship", f"tail://{logs}/*.log", "--to",
         str(tmp_path / "o"), "--ledger", str(tmp_path / "l.db"), "--follow",
         "--batch-wait", "0.05"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:

        def progress_line() -> bool:
            with app.open("a") as f:  # plain progress prints on progress, every 5 s
                f.write("more\n")
            return any(line.startswith("progress:") for line in lines)

        wait_for(progress_line, timeout=20, interval=0.5, message="a progress line")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    progress = next(line for line in lines if line.startswith("progress:"))
    assert "objects" not in progress and "0 files done" in progress, progress
    # rich wrapped this 84-character notice at 80 columns when stderr was not a terminal
    assert (
        "SIGTERM: finishing the batches in flight, then stopping (at most 30 s; again to force)\n"
        in lines
    ), lines
    summary = next(line for line in lines if line.startswith("shipped "))
    assert summary.startswith("shipped 0 files, "), summary
