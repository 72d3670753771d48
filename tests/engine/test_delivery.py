"""The one retry layer and the lease keeper: outcomes, time bounds, lost claims."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from logferry.config import ShipOptions
from logferry.engine import ObjectRunner, Router
from logferry.engine.delivery import Delivered, Deliverer, Refused, RetryLater, RetryPolicy
from logferry.engine.leases import LeaseKeeper
from logferry.errors import FatalSinkError, RetryableSinkError
from logferry.ledger import SQLiteLedger
from logferry.ledger.base import Claim
from logferry.records import Batch, ObjectInfo
from logferry.sinks.base import Sink
from logferry.sources import LocalDirSource

BATCH = Batch("src", "key", 0, 1, ["x"], [1])


class Scripted(Sink):
    """Raises the scripted errors in turn, then takes batches."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.written = 0

    def write(self, batch: Batch) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.written += 1


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, retry_after_cap=10.0)
    for retry in range(12):
        for _ in range(50):
            assert 0.25 <= policy.backoff(retry) <= min(4.0, 0.5 * 2**retry)
    assert policy.delay(0, 7.0) == 7.0
    assert policy.delay(0, 3600.0) == 10.0


def test_outcomes() -> None:
    sleeps: list[float] = []
    deliver = Deliverer(RetryPolicy(base=0.01), sleep=sleeps.append).deliver
    assert deliver(Scripted(RetryableSinkError("503"), RetryableSinkError("503")), BATCH) == (
        Delivered(3)
    )
    assert len(sleeps) == 2
    refused = deliver(Scripted(FatalSinkError("HTTP 400: bad")), BATCH)
    assert isinstance(refused, Refused)
    assert refused.error_class == "FatalSinkError"
    assert refused.reason == "HTTP 400: bad"
    # A user handler's own exception is a refusal too (it will not pass by waiting).
    handler = deliver(Scripted(ValueError("no such field")), BATCH)
    assert isinstance(handler, Refused)
    assert handler.reason == "ValueError: no such field"


def test_gives_up_when_the_time_runs_out() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(give_up_after=5.0, base=1.0, cap=1.0, retry_after_cap=60)
    sink = Scripted(*[RetryableSinkError("down", retry_after=2.0) for _ in range(100)])
    outcome = Deliverer(policy, sleep=sleeps.append).deliver(sink, BATCH)
    assert isinstance(outcome, RetryLater)
    assert not outcome.stopped
    assert "gave up after" in outcome.reason
    assert sum(sleeps) <= 5.0


def test_stop_ends_a_retry_wait_at_once() -> None:
    stop = threading.Event()
    sink = Scripted(*[RetryableSinkError("down", retry_after=30.0) for _ in range(5)])
    threading.Timer(0.2, stop.set).start()
    began = time.monotonic()
    outcome = Deliverer(RetryPolicy(retry_after_cap=60), stop).deliver(sink, BATCH)
    assert isinstance(outcome, RetryLater)
    assert outcome.stopped
    assert time.monotonic() - began < 5


def _steal(path: Path, key: str) -> None:
    """Another runner takes the row over (as after this one paused past its lease)."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE objects SET owner = 'other:1:x' WHERE key = ?", (key,))


def test_lease_keeper_reports_lost_claims(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    claim = ledger.claim("s", ObjectInfo("k", 1, "e", 0), "me:1:a", 30)
    assert claim is not None
    lost: list[Claim] = []
    keeper = LeaseKeeper(ledger, 30, lost.append)
    keeper.hold(claim)
    keeper.renew_now()
    assert lost == []
    _steal(tmp_path / "l.db", "k")
    keeper.renew_now()
    assert lost == [claim]
    keeper.renew_now()  # dropped once lost: reported once
    assert lost == [claim]
    ledger.close()


def test_object_runner_stops_shipping_an_object_whose_claim_was_lost(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "a.log").write_text("one\n")
    ledger = SQLiteLedger(tmp_path / "l.db")
    down = Scripted(*[RetryableSinkError("down") for _ in range(10_000)])
    options = ShipOptions(lease_seconds=1, retry_timeout=120, retry_backoff=0.05)
    runner = ObjectRunner(LocalDirSource(bucket), Router.to_all([down]), ledger, options)
    threading.Timer(0.5, _steal, (tmp_path / "l.db", "a.log")).start()
    began = time.monotonic()
    result = runner.run()
    assert time.monotonic() - began < 10  # not the 120 s retry time
    assert result.failed == []  # the other runner ships it; not an error here
    (entry,) = ledger.entries()
    assert entry.owner == "other:1:x"
    ledger.close()


@pytest.mark.parametrize("follow", [False, True])
def test_follow_retries_without_end(follow: bool) -> None:
    options = ShipOptions(follow=follow, retry_timeout=5)
    from logferry.engine.objects import retry_policy_of

    policy = retry_policy_of(options)
    assert policy.give_up_after == (None if follow else 5)
