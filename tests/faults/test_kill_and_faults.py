"""Fault injection: SIGKILL at random moments, a flaky ingest API, and hostile objects.

Seeds are fixed so a failure reproduces; LOGFERRY_FAULT_SEED overrides them.
"""

from __future__ import annotations

import collections
import gzip
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from logferry.engine import Progress
from logferry.ledger import SQLiteLedger, Status
from logferry.sinks.files import FileSink
from logferry.sinks.mezmo import MezmoSink
from tests.conftest import run_cli
from tests.shipping import ship

SEED = int(os.environ.get("LOGFERRY_FAULT_SEED", "20261123"))
OBJECTS = 200
LINES = 400
BATCH_BYTES = 4096


def line(obj: int, i: int) -> bytes:
    return orjson.dumps({"ts": 1_700_000_000 + i, "o": obj, "i": i, "pad": "x" * (i % 40)})


def test_sigkill_20_times_then_complete(s3, bucket, s3_endpoint, tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    for o in range(OBJECTS):
        body = b"\n".join(line(o, i) for i in range(LINES)) + b"\n"
        s3.put_object(Bucket=bucket, Key=f"app/{o:04d}.ndjson.gz", Body=gzip.compress(body))
    out, led = tmp_path / "out", tmp_path / "l.db"
    args = [sys.executable, "-m", "logferry", "ship", f"s3://{bucket}/app/", "--to", str(out),
            "--to", mezmo.url, "--ledger", str(led), "--batch-bytes", str(BATCH_BYTES), "--quiet"]  # fmt: skip
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}
    mezmo.delay = 0.03  # enough work in flight that every one of the 20 kills lands mid-run
    kills = 0
    while kills < 20:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.2))
        if proc.poll() is not None:
            break  # finished before this kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    p = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert kills == 20, f"only {kills} kills landed before the work was done"

    # every line reached Mezmo at least once; duplicates only from batches in flight at a kill
    counts = collections.Counter(
        (r["o"], r["i"]) for r in (orjson.loads(x["line"]) for x in mezmo.lines)
    )
    assert len(counts) == OBJECTS * LINES, "lines lost"
    duplicates = sum(c - 1 for c in counts.values())
    per_batch = BATCH_BYTES // 40 + 1  # lines are at least 40 bytes
    assert duplicates <= kills * 4 * per_batch, duplicates  # 4 workers, 1 batch in flight each
    # the file sink is exactly-once: every object's file holds each line once, in order
    sink = FileSink(out)
    for o in range(OBJECTS):
        rows = sink.path_for(f"app/{o:04d}.ndjson.gz").read_bytes().splitlines()
        assert [orjson.loads(orjson.loads(r)["line"])["i"] for r in rows] == list(range(LINES))
    assert not list(out.rglob("*.partial"))
    ledger = SQLiteLedger(led)
    assert {e.status for e in ledger.entries()} == {Status.DONE}
    ledger.close()
    print(
        f"\nfaults(a): {kills} SIGKILLs, 0 lines lost, {duplicates} duplicates at Mezmo, file sink exact"
    )


def test_flaky_ingest_30_percent(tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "bucket"
    src.mkdir()
    for o in range(20):
        (src / f"{o:02d}.ndjson").write_bytes(b"\n".join(line(o, i) for i in range(500)) + b"\n")
    mezmo.fail_ratio = 0.3  # 429, 500, 503, timeouts and connection resets
    mezmo.timeout_sleep = 1.0
    mezmo._random.seed(SEED)
    sink = MezmoSink(mezmo.url, timeout=0.5)
    r = ship(str(src), to=sink, ledger=str(tmp_path / "l.db"), batch_bytes=8192, retry_backoff=0.01)
    assert r.ok, r.failed
    counts = collections.Counter(
        (x["o"], x["i"]) for x in map(lambda y: orjson.loads(y["line"]), mezmo.lines)
    )
    assert len(counts) == 20 * 500, "lines lost"
    statuses = mezmo.statuses()
    injected = sum(v for k, v in statuses.items() if k != 200)
    assert injected >= 10
    assert {429, 500, 503} <= set(statuses)
    # a request the server answered only after the client's timeout may be duplicated; never lost
    print(f"\nfaults(b): {injected} faults injected over {sum(statuses.values())} requests, 0 lost, "
          f"{sum(c - 1 for c in counts.values())} duplicates")  # fmt: skip


def test_hostile_objects(s3, bucket, s3_endpoint, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = b"\n".join(line(0, i) for i in range(100)) + b"\n"
    objects = {
        "ok/plain.ndjson": good,
        "ok/with space and +plus and ünïcode ✓.ndjson": good,
        "ok/empty.log": b"",
        "ok/invalid-utf8.log": b"caf\xe9\nna\xefve \xff\xfe\n",
        "ok/one-5MB-line.log": b"y" * (5 * 1024 * 1024) + b"\n",
        "bad/corrupt.ndjson.gz": gzip.compress(good)[:30] + b"\x00" * 50 + gzip.compress(good)[80:],
        "bad/truncated.ndjson.gz": gzip.compress(good)[:-12],
        "bad/garbage.json": os.urandom(4096).replace(b"{", b"("),
        "bad/vanishing.log": b"here now\n",
    }
    objects["bad/garbage.json"] = (
        b"{" + objects["bad/garbage.json"]
    )  # a "document" that is not JSON
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    class Vanish(Progress):
        def start_pass(self, objects: int, nbytes: int) -> None:
            s3.delete_object(Bucket=bucket, Key="bad/vanishing.log")

    out = tmp_path / "out"
    r = ship(f"s3://{bucket}", to=str(out), ledger=str(tmp_path / "l.db"), endpoint_url=s3_endpoint,
             progress=Vanish(), max_line_bytes=1024)  # fmt: skip
    failed = {f.key: f.error for f in r.failed}
    assert set(failed) == {k for k in objects if k.startswith("bad/")}
    assert all(len(e.splitlines()) == 1 for e in failed.values())
    assert r.objects == 5
    sink = FileSink(out)
    rows = lambda k: [orjson.loads(x) for x in sink.path_for(k).read_bytes().splitlines()]  # noqa: E731
    assert len(rows("ok/with space and +plus and ünïcode ✓.ndjson")) == 100
    assert [x["line"] for x in rows("ok/invalid-utf8.log")] == [
        "caf\ufffd",
        "na\ufffdve \ufffd\ufffd",
    ]
    assert rows("ok/empty.log") == []
    # A line over --max-record-bytes (1 MiB) keeps its head and says what was cut.
    (long,) = rows("ok/one-5MB-line.log")
    assert long["line"].startswith("y" * (1 << 20))
    assert long["line"].endswith("[truncated 4194304 bytes]")
    # each bad object is exactly one clear entry in the error queue
    p = run_cli("errors", "--ledger", str(tmp_path / "l.db"), "--json")
    queue = {orjson.loads(x)["key"]: orjson.loads(x) for x in p.stdout.splitlines()}
    assert set(queue) == set(failed)
    assert queue["bad/vanishing.log"]["error_class"] == "SourceError"
    assert queue["bad/truncated.ndjson.gz"]["error_class"] == "DecodeError"
