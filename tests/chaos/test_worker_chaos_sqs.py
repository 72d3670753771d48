"""Chaos: three workers consume SQS notifications of 300 objects; one is SIGKILLed every
2.5 s and restarted. Every line arrives exactly once in the file sink, none is lost at the
Mezmo server, and its duplicates stay within what the killed workers had in hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chaos.harness import ChaosReport, check, run_chaos, upload
from tests.worker.world import WorkerSetup, s3_event


def test_workers_killed_at_random_lose_nothing(
    world: WorkerSetup, mezmo: Any, record_property: pytest.RecordProperty
) -> None:
    keys = upload(world.s3, world.bucket)
    for start in range(0, len(keys), 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps(s3_event(world.bucket, key))}
            for i, key in enumerate(keys[start : start + 10])
        ]
        world.sqs.send_message_batch(QueueUrl=world.queue, Entries=entries)
    config = world.config(mezmo=mezmo.url)
    report: ChaosReport = run_chaos(
        tmp_path=world.tmp, config=config, queue=world.queue, keys=keys,
        source_id=f"s3://{world.bucket}", ledger_url=world.ledger_url, mezmo=mezmo,
        out=world.out,
    )  # fmt: skip
    check(report, record_property)
    assert world.counts() == (0, 0)
