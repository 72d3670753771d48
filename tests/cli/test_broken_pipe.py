"""``--to -`` read by ``head``: the run stops quietly, nothing refused, the ledger exact."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from logferry.ledger import SQLiteLedger, Status
from tests.conftest import run_cli

TOTAL = 200_000


def _lines(n: int) -> bytes:
    return b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(n))


def _head(args: list[str], lines: int) -> tuple[list[int], subprocess.Popen[bytes]]:
    """Run ``logferry ARGS``, read ``lines`` lines of its stdout, then close the pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.stdout is not None
    got = [orjson.loads(orjson.loads(proc.stdout.readline())["line"])["n"] for _ in range(lines)]
    proc.stdout.close()
    proc.wait(timeout=60)
    return got, proc


def _check_ledger(path: Path, rerun: list[str]) -> None:
    """No failures, no dead letters; a second run ships exactly the rest, in order."""
    led = SQLiteLedger(path, create=False)
    try:
        entries = led.entries()
        assert entries and not [e for e in entries if e.status == Status.FAILED]
        assert not led.dead_letters()
        position = entries[0].position
    finally:
        led.close()
    assert position < TOTAL
    p = run_cli(*rerun)
    assert p.returncode == 0, p.stderr
    rest = [orjson.loads(orjson.loads(x)["line"])["n"] for x in p.stdout.splitlines()]
    assert rest == list(range(position, TOTAL))


@pytest.mark.parametrize("kind", ["bucket", "tail"])
def test_head_closing_the_pipe_stops_quietly(
    kind: str,
    s3,
    bucket: str,
    s3_endpoint: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    led = tmp_path / "l.db"
    if kind == "bucket":
        s3.put_object(Bucket=bucket, Key="a.log.gz", Body=gzip.compress(_lines(TOTAL)))
        args = ["ship", f"s3://{bucket}/", "--endpoint-url", s3_endpoint]
    else:
        (tmp_path / "a.log").write_bytes(_lines(TOTAL))
        args = ["ship", f"tail://{tmp_path}/*.log"]
    args += ["--to", "-", "--ledger", str(led), "--batch-lines", "1000"]
    got, proc = _head(args, 10)
    assert got == list(range(10))
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 141, stderr  # 128 + SIGPIPE, as a shell reports `cat | head`
    # progress lines at most: no error, no refused batch, no summary, no traceback
    assert all(line.startswith("listing found") for line in stderr.splitlines()), stderr
    _check_ledger(led, args)
