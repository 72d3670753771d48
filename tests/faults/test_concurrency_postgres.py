"""Two catch-up processes and a stream of ``--key`` invocations on one Postgres ledger.

Objects keep arriving while they run, as they do in a bucket with notifications: every
object must reach the ingest API exactly once and be attempted exactly once.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
import psycopg

PRELOADED = 24  # objects in the bucket before the catch-ups start
ARRIVING = 60  # objects uploaded while they run
ARRIVAL_SECONDS = 4.0
KEY_EVERY = 4  # every 4th arriving object is also shipped by a `--key` invocation
LINES = 300


def body(obj: int) -> bytes:
    """Distinct, numbered lines: a duplicate or a gap names its object and line."""
    return b"".join(b"obj%03d line%04d %s\n" % (obj, i, b"x" * (i % 30)) for i in range(LINES))


def key_of(obj: int) -> str:
    return f"app/{obj:03d}.log"


def test_two_catchups_and_key_stream_ship_everything_once(
    s3: Any, bucket: str, s3_endpoint: str, mezmo: Any, pg_url: str
) -> None:
    for o in range(PRELOADED):
        s3.put_object(Bucket=bucket, Key=key_of(o), Body=body(o))
    mezmo.delay = 0.05  # keeps the catch-ups busy while objects arrive
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}
    ship = [sys.executable, "-m", "logferry", "ship", f"s3://{bucket}/app/", "--to", mezmo.url,
            "--ledger", pg_url, "--batch-bytes", "4096", "--json", "--quiet"]  # fmt: skip

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ship, *extra], env=env, capture_output=True, text=True, timeout=120)

    catchups = [
        subprocess.Popen(ship, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    keyed: list[Future[subprocess.CompletedProcess[str]]] = []
    arrivals_done = threading.Event()
    with ThreadPoolExecutor(max_workers=4) as pool:

        def arrive() -> None:
            for o in range(PRELOADED, PRELOADED + ARRIVING):
                s3.put_object(Bucket=bucket, Key=key_of(o), Body=body(o))
                if o % KEY_EVERY == 0:  # what a bucket notification would trigger
                    keyed.append(pool.submit(run, "--key", key_of(o)))
                time.sleep(ARRIVAL_SECONDS / ARRIVING)
            arrivals_done.set()

        uploader = threading.Thread(target=arrive, name="arrivals")
        uploader.start()
        uploader.join(timeout=60)
        assert arrivals_done.is_set(), "uploads did not finish"
        still_running = sum(p.poll() is None for p in catchups)
        outputs = [p.communicate(timeout=120) for p in catchups]
        key_results = [f.result() for f in keyed]

    summaries: list[dict[str, Any]] = []
    for proc, (stdout, stderr) in zip(catchups, outputs, strict=True):
        assert proc.returncode == 0, stderr
        summaries.append(orjson.loads(stdout.splitlines()[-1]))
    for p in key_results:
        assert p.returncode == 0, p.stderr
        summaries.append(orjson.loads(p.stdout.splitlines()[-1]))
    # A catch-up ends when a listing finds nothing new; later arrivals are this run's.
    final = run()
    assert final.returncode == 0, final.stderr
    summaries.append(orjson.loads(final.stdout.splitlines()[-1]))

    total = PRELOADED + ARRIVING
    assert all(s["failed"] == [] for s in summaries)
    # each object was shipped by exactly one process...
    assert sum(s["objects"] for s in summaries) == total
    assert sum(s["lines"] for s in summaries) == total * LINES
    # ...and every line reached the ingest API exactly once
    counts = collections.Counter(x["line"] for x in mezmo.lines)
    expected = {ln.decode() for o in range(total) for ln in body(o).splitlines()}
    assert set(counts) == expected, "lines missing or unexpected"
    duplicated = {ln: c for ln, c in counts.items() if c > 1}
    assert not duplicated, f"{len(duplicated)} lines shipped twice, e.g. {min(duplicated)}"

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT key, status, attempts, position, lines, owner FROM logferry_objects"
        ).fetchall()
    assert sorted(r[0] for r in rows) == [key_of(o) for o in range(total)]
    bad = [r for r in rows if r[1:] != ("done", 1, LINES, LINES, None)]
    assert not bad, bad

    by_catchup = [s["objects"] for s in summaries[:2]]
    by_key = sum(s["objects"] for s in summaries[2:-1])
    print(
        f"\nconcurrency(pg): {total} objects; catch-ups shipped {by_catchup} "
        f"({still_running} still running when uploads ended), {len(key_results)} --key runs "
        f"shipped {by_key} (skipped {sum(s['skipped'] for s in summaries[2:-1])}), "
        f"final catch-up {summaries[-1]['objects']}; 0 duplicates, 0 missing"
    )
