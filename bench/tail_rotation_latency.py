"""Benchmark: how soon the first line of a rotated-in file is shipped by ``ship --follow``.

Starts ``logferry ship tail:///DIR/*.log --to OUT --follow`` once, then for every trial
renames ``app.log`` away (``app.log.N``, which the glob does not match), creates an empty
``app.log`` as logrotate's ``create`` does, appends one line to it and times how long it
takes until the file sink's output holds that line. Prints the median and the maximum.

    python bench/tail_rotation_latency.py                     # 20 trials, --batch-wait 0.05
    python bench/tail_rotation_latency.py --trials 5 --batch-wait 1
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shipped(out: Path, line: str) -> bool:
    """True once a JSONL file under ``out`` holds ``line``."""
    needle = f'"line":"{line}"'.encode()
    return any(needle in p.read_bytes() for p in out.rglob("*.jsonl"))


def wait_shipped(out: Path, line: str, timeout: float) -> float:
    """Seconds until ``line`` is in the output (``timeout`` if it never comes)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if shipped(out, line):
            return time.monotonic() - began
        time.sleep(0.005)
    return timeout


def main() -> int:
    """Run the trials and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--batch-wait", default="0.05")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs, out = Path(tmp) / "logs", Path(tmp) / "out"
        logs.mkdir()
        app = logs / "app.log"
        app.write_text("warm-up\n")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "logferry", "ship", f"tail://{logs}/*.log", "--to", str(out),
             "--ledger", str(Path(tmp) / "l.db"), "--follow", "--quiet",
             "--batch-wait", args.batch_wait],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        times: list[float] = []
        try:
            if wait_shipped(out, "warm-up", args.timeout) >= args.timeout:
                print("the first file was never shipped", file=sys.stderr)
                return 1
            for i in range(args.trials):
                app.rename(logs / f"app.log.{i}")
                app.touch()
                with app.open("a") as f:
                    f.write(f"rotated {i}\n")
                seconds = wait_shipped(out, f"rotated {i}", args.timeout)
                times.append(seconds)
                print(f"trial {i + 1:2}: {seconds:6.3f} s", flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            if proc.returncode:
                print(err.decode(errors="replace"), file=sys.stderr)
    missed = sum(t >= args.timeout for t in times)
    print(
        f"{len(times)} rotations, --batch-wait {args.batch_wait}: "
        f"median {statistics.median(times):.3f} s, max {max(times):.3f} s"
        + (f", {missed} not shipped within {args.timeout:g} s" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
