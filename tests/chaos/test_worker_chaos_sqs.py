"""Chaos: three workers consume SQS notifications of 300 objects; one is SIGKILLed every
2.5 s and restarted. Every line arrives exactly once in the file sink, none is lost at the
Mezmo server, and its duplicates stay within what the killed workers had in hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chaos.harness import ChaosReport, check, run_chaos, upload
from tests.worker.conftest import WorkerSetup, s3_event


def test_workers_killed_at_random_lose_nothing(
    setup: WorkerSetup, mezmo: Any, record_property: pytest.RecordProperty
) -> None:
    keys = upload(setup.s3, setup.bucket)
    for start in range(0, len(keys), 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps(s3_event(setup.bucket, key))}
            for i, key in enumerate(keys[start : start + 10])
        ]
        setup.sqs.send_message_batch(QueueUrl=setup.queue, Entries=entries)
    config = setup.config(mezmo=mezmo.url)
    report: ChaosReport = run_chaos(
        tmp_path=setup.tmp, config=config, queue=setup.queue, keys=keys,
        source_id=f"s3://{setup.bucket}", ledger_url=setup.ledger_url, mezmo=mezmo,
        out=setup.out,
    )  # fmt: skip
    check(report, record_property)
    assert report.killed >= 3
    assert report.lost_files == 0
    assert report.duplicated_files == 0
    assert report.lost_mezmo == 0
    assert report.duplicated_mezmo <= report.duplicate_bound
    assert setup.counts() == (0, 0)
