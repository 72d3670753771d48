"""enqueue: a bucket listed by prefix into a work queue (moto S3 + SQS server, JetStream)."""

from __future__ import annotations

import collections
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from logferry.engine.enqueue import EnqueueResult, enqueue, plan_units
from logferry.errors import ConfigError
from logferry.ledger import Ledger, open_ledger
from logferry.ledger.base import new_owner_id
from logferry.sources.s3 import S3Source
from tests.queues.harness import (
    ALL_KEYS,
    PER_DAY,
    PREFIXES,
    NatsHarness,
    SqsHarness,
    drain,
    key_of,
)


@pytest.fixture()
def source(big_bucket: str, s3_endpoint: str) -> S3Source:
    return S3Source(big_bucket, endpoint_url=s3_endpoint)


@pytest.fixture()
def ledger(tmp_path: Path) -> Ledger:
    return open_ledger(f"sqlite:///{tmp_path}/ledger.db")


def test_every_key_is_published_once_as_an_s3_event(
    nats_harness: NatsHarness, source: S3Source, ledger: Ledger, big_bucket: str
) -> None:
    queue = nats_harness.open()
    result = enqueue(source, queue, ledger, parallel=4)
    items = drain(queue, nats_harness, len(ALL_KEYS))
    assert sorted(i.key for i in items) == ALL_KEYS
    assert {i.bucket for i in items} == {big_bucket}
    assert result.published == len(ALL_KEYS)
    assert result.prefixes > len(PREFIXES)  # split below the top-level folders too


def test_sqs_gets_every_key_of_the_given_prefixes_once(
    sqs_harness: SqsHarness, source: S3Source, ledger: Ledger
) -> None:
    # moto's SQS slows down as a queue grows (each call scans it): a few hundred keys here,
    # the full listing goes through JetStream above.
    wanted = ["alpha/year=2020/month=06/day=01/", "delta/year=2020/month=06/day=03/"]
    queue = sqs_harness.open()
    result = enqueue(source, queue, ledger, prefixes=wanted, parallel=2)
    items = drain(queue, sqs_harness, 2 * PER_DAY)
    assert sorted(i.key for i in items) == [k for k in ALL_KEYS if k.startswith(tuple(wanted))]
    assert result.published == 2 * PER_DAY


def test_an_item_names_size_and_etag(
    sqs_harness: SqsHarness, source: S3Source, ledger: Ledger
) -> None:
    queue = sqs_harness.open()
    enqueue(source, queue, ledger, prefixes=["alpha/year=2020/month=06/day=01/hour=00/obj-007"])
    (item,) = drain(queue, sqs_harness, 1)
    head = source.head(key_of("alpha/", 1, 7))
    assert item.size == head.size
    assert item.etag == head.etag


def test_since_and_until_select_by_the_time_in_thekey_of(
    nats_harness: NatsHarness, source: S3Source, ledger: Ledger
) -> None:
    day2 = int(datetime(2020, 6, 2, tzinfo=UTC).timestamp() * 1000)
    day3 = int(datetime(2020, 6, 3, tzinfo=UTC).timestamp() * 1000)
    queue = nats_harness.open()
    result = enqueue(source, queue, ledger, since=day2, until=day3)
    items = drain(queue, nats_harness, len(PREFIXES) * PER_DAY)
    assert sorted(i.key for i in items) == [k for k in ALL_KEYS if "/day=02/" in k]
    assert result.published == len(PREFIXES) * PER_DAY


def test_objects_done_in_the_ledger_are_skipped(
    sqs_harness: SqsHarness, source: S3Source, ledger: Ledger
) -> None:
    day = "beta/year=2020/month=06/day=02/"
    done = [o for page in source.list_from(day) for o in page][:40]
    owner = new_owner_id()
    for obj in done:
        claim = ledger.claim(source.id, obj, owner, 60)
        assert claim is not None
        ledger.complete(claim)
    queue = sqs_harness.open()
    result = enqueue(source, queue, ledger, prefixes=[day])
    items = drain(queue, sqs_harness, PER_DAY - 40)
    assert {i.key for i in items}.isdisjoint(o.key for o in done)
    assert result.done == 40


def test_objects_under_the_prune_watermark_are_skipped(
    sqs_harness: SqsHarness, source: S3Source, ledger: Ledger
) -> None:
    """`ledger prune` deleted their rows: unknown to the ledger and older than the source's
    watermark, they were shipped, and a backfill must not send them again."""
    from logferry.ledger.sql import SqlLedger

    assert isinstance(ledger, SqlLedger)
    day = "beta/year=2020/month=06/day=03/"
    ledger.prune(int(datetime.now(UTC).timestamp() * 1000) + 60_000, source.id)
    result = enqueue(source, sqs_harness.open(), ledger, prefixes=[day])
    assert result.published == 0
    assert result.done == PER_DAY


def test_a_rerun_publishes_nothing_and_restart_lists_again(
    sqs_harness: SqsHarness, source: S3Source, ledger: Ledger
) -> None:
    queue = sqs_harness.open()
    day = ["gamma/year=2020/month=06/day=01/"]
    first = enqueue(source, queue, ledger, prefixes=day)
    again = enqueue(source, queue, ledger, prefixes=day)
    restarted = enqueue(source, queue, ledger, prefixes=day, restart=True)
    assert first.published == PER_DAY
    assert again.published == 0
    assert restarted.published == PER_DAY


def test_a_stopped_run_resumes_without_duplicates(
    nats_harness: NatsHarness, source: S3Source, ledger: Ledger
) -> None:
    queue = nats_harness.open()
    stop = threading.Event()

    def stop_after_some(result: EnqueueResult) -> None:
        if result.published >= 200:
            stop.set()

    first = enqueue(
        source, queue, ledger, parallel=2, batch=25, stop=stop, progress=stop_after_some
    )
    rest = enqueue(source, queue, ledger, parallel=3, batch=25)
    items = drain(queue, nats_harness, len(ALL_KEYS))
    counts = collections.Counter(i.key for i in items)
    assert first.interrupted
    assert first.published < len(ALL_KEYS)
    assert sorted(counts) == ALL_KEYS
    assert max(counts.values()) == 1
    assert first.published + rest.published == len(ALL_KEYS)


def test_overlapping_prefixes_are_a_config_error(
    source: S3Source, ledger: Ledger, sqs_harness: SqsHarness
) -> None:
    with pytest.raises(ConfigError, match="do not overlap"):
        enqueue(source, sqs_harness.open(), ledger, prefixes=["alpha/", "alpha/year=2020/"])


def test_folders_out_of_the_time_range_are_not_listed(source: S3Source) -> None:
    day3 = int(datetime(2020, 6, 3, 1, tzinfo=UTC).timestamp() * 1000)
    units = plan_units(source, since=day3)
    listed: list[Any] = [u.prefix for u in units]
    assert not any("/day=01/" in p for p in listed)
    assert any("/day=03/" in p for p in listed)


def test_missing_bucket_is_a_config_error(
    s3_endpoint: str, ledger: Ledger, sqs_harness: SqsHarness
) -> None:
    missing = S3Source(f"nope-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint)
    with pytest.raises(ConfigError, match="does not exist"):
        enqueue(missing, sqs_harness.open(), ledger)


def test_hostile_keys_travel_intact(
    nats_harness: NatsHarness, s3: Any, bucket: str, s3_endpoint: str, ledger: Ledger
) -> None:
    # (moto refuses a line break in a key; control characters it takes)
    keys = sorted(["tab\tx.log", "ümlaut %41 + plus.log", "esc\x1b[31m.log", "a/b c?.log"])
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    queue = nats_harness.open()
    enqueue(S3Source(bucket, endpoint_url=s3_endpoint), queue, ledger)
    items = drain(queue, nats_harness, len(keys))
    assert sorted(i.key for i in items) == keys
