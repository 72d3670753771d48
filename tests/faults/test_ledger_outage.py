"""A runner that loses its PostgreSQL ledger for 10 s carries on: every line once.

The ledger is reached through a loopback TCP proxy that the test cuts: open connections are
closed and new ones refused for 10 s, as a network cut or a server restart does, while a
real ``logferry ship`` process runs.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest

from logferry.engine.leases import LeaseKeeper
from logferry.ledger import Claim, ClaimLostError, LedgerError, open_ledger
from logferry.ledger.postgres import PostgresLedger
from logferry.notifications import s3_event_body, s3_event_record
from logferry.records import ObjectInfo
from tests.helpers import free_port, wait_for

OBJECTS = 40
LINES = 200
OUTAGE_SECONDS = 10.0


class CuttableProxy:
    """Forwards a loopback port to ``upstream``; :meth:`cut` drops and refuses connections."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.severed = 0  # live connections closed by cuts
        self.refused = 0  # connections refused during cuts
        self._cut = False
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> CuttableProxy:
        """Listen and accept in a background thread."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def close(self) -> None:
        """Stop listening (shutdown wakes the accepting thread) and drop every connection."""
        self.cut()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def restore(self) -> None:
        """End the cut: connections go through again."""
        self._cut = False

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._cut:  # the server is "down": reset at once
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with self._lock:
                    self._socks.discard(s)
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self._cut = True
        with self._lock:
            socks, self._socks = list(self._socks), set()
        self.severed += len(socks) // 2
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def body(obj: int) -> bytes:
    return b"".join(b"obj%03d line%04d\n" % (obj, i) for i in range(LINES))


def _done(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        made = conn.execute("SELECT to_regclass('logferry_objects') IS NOT NULL").fetchone()
        if not (made and made[0]):
            return 0  # ship has not made its ledger yet
        row = conn.execute("SELECT count(*) FROM logferry_objects WHERE status = 'done'").fetchone()
    return int(row[0]) if row else 0


def _shipped_lines(out: Path) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for path in out.rglob("*.jsonl"):
        for raw in path.read_bytes().splitlines():
            found[orjson.loads(raw)["line"]] += 1
    return found


def _ride_out_an_outage(
    command: list[str], pg_url: str, tmp_path: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], CuttableProxy, int, int]:
    """Run ``logferry COMMAND --ledger <via the proxy>``, cut the ledger for 10 s once three
    objects are done, restore it and wait for the end: (the run, the proxy, objects done at
    the cut, objects done when the outage ended)."""
    parts = urlsplit(pg_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    via_proxy = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    env = {**os.environ, **env, "LOGFERRY_LEDGER_RETRY_SECONDS": "60"}
    run = subprocess.Popen(
        [sys.executable, "-m", "logferry", *command, "--ledger", via_proxy, "--json", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _done(pg_url) >= 3, timeout=60, message="no progress before the cut")
        proxy.cut()
        done_at_cut = _done(pg_url)
        assert run.poll() is None, "the run finished before the outage: give it more work"
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for something
        done_after_outage = _done(pg_url)
        proxy.restore()
        stdout, stderr = run.communicate(timeout=180)
    finally:
        proxy.close()
        if run.poll() is None:
            run.kill()
            run.wait()
    result = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    return result, proxy, done_at_cut, done_after_outage


def _check_every_line_once(out: Path) -> None:
    lines = _shipped_lines(out)
    expected = {f"obj{o:03d} line{i:04d}" for o in range(OBJECTS) for i in range(LINES)}
    assert set(lines) == expected
    assert max(lines.values()) == 1


def test_ship_rides_out_a_ten_second_ledger_outage(
    s3: Any, bucket: str, s3_endpoint: str, pg_url: str, tmp_path: Path
) -> None:
    for o in range(OBJECTS):
        s3.put_object(Bucket=bucket, Key=f"app/{o:03d}.log", Body=body(o))
    out = tmp_path / "out"
    command = ["ship", f"s3://{bucket}/app/", "--to", f"file://{out}", "--batch-lines", "10",
               "--workers", "2"]  # fmt: skip
    ship, proxy, done_at_cut, done_after_outage = _ride_out_an_outage(
        command, pg_url, tmp_path, {"AWS_ENDPOINT_URL": s3_endpoint}
    )
    assert ship.returncode == 0, ship.stderr
    assert proxy.severed >= 1
    assert proxy.refused >= 1  # it kept trying while the ledger was away
    assert done_after_outage == done_at_cut  # and marked nothing done meanwhile
    assert orjson.loads(ship.stdout.splitlines()[-1])["objects"] == OBJECTS
    _check_every_line_once(out)


def test_a_worker_rides_out_a_ten_second_ledger_outage(
    s3: Any, bucket: str, s3_endpoint: str, pg_url: str, tmp_path: Path
) -> None:
    """The issue's case: a queue worker loses its database for 10 s and resumes: every
    object's message is acked only once its object is done, every line arrives once."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"outage-{bucket}")["QueueUrl"]
    for o in range(OBJECTS):
        key = f"app/{o:03d}.log"
        s3.put_object(Bucket=bucket, Key=key, Body=body(o))
        event = s3_event_body([s3_event_record(bucket, key, None, None)])
        sqs.send_message(QueueUrl=queue, MessageBody=event.decode())
    out = tmp_path / "out"
    command = ["worker", "--queue", queue, "--source", f"s3://{bucket}/app/", "--to",
               f"file://{out}", "--endpoint-url", s3_endpoint, "--concurrency", "2",
               "--stop-when-idle", "5", "--visibility-timeout", "120"]  # fmt: skip
    worker, proxy, done_at_cut, done_after_outage = _ride_out_an_outage(
        command, pg_url, tmp_path, {}
    )
    assert worker.returncode == 0, worker.stderr
    assert proxy.severed >= 1
    assert done_after_outage == done_at_cut
    summary = orjson.loads(worker.stdout.splitlines()[-1])
    assert summary["messages"]["dead_lettered"] == 0
    assert _done(pg_url) == OBJECTS
    _check_every_line_once(out)
    left = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert left == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


def test_an_outage_past_the_bound_is_one_clear_error_and_then_over(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    led = open_ledger(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl())
    assert isinstance(led, PostgresLedger)
    led.retry_seconds = 2
    try:
        proxy.cut()
        began = time.monotonic()
        with pytest.raises(LedgerError, match=r"cannot reach ledger postgresql://.* for 2 s"):
            led.status()
        waited = time.monotonic() - began
        with pytest.raises(LedgerError, match="cannot reach ledger"):
            led.check_writable()  # a readiness probe does not wait out the outage
        proxy.restore()
        assert led.status() == []
    finally:
        led.close()
        proxy.close()
    assert 2 <= waited < 5


def test_a_claim_taken_over_during_an_outage_is_reported_lost_after_it(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    cut_off = open_ledger(
        parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    )
    other = open_ledger(pg_url)
    obj = ObjectInfo("k.log", 1, "e", 0)
    mine = cut_off.claim("s3://b", obj, "cut-off-runner", 1.0)
    assert mine is not None
    lost: list[Claim] = []
    keeper = LeaseKeeper(cut_off, 1.0, lost.append)
    keeper.hold(mine)
    keeper.start()
    try:
        proxy.cut()
        # Our lease runs out while we cannot renew it, and another runner takes the object.
        wait_for(lambda: other.claim("s3://b", obj, "other-runner", 60), timeout=10)
        proxy.restore()
        wait_for(lambda: lost, timeout=30, message="the lost claim was never reported")
        with pytest.raises(ClaimLostError):
            cut_off.checkpoint(mine, 1, 1, 1.0)
    finally:
        keeper.stop()
        cut_off.close()
        other.close()
        proxy.close()
    assert lost == [mine]
