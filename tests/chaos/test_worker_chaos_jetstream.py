"""Chaos on NATS JetStream: the SQS chaos test's workers, kills and checks, with the
machine's JetStream server as the queue."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chaos.harness import check, run_chaos, upload
from tests.worker.conftest import JetStreamSetup, s3_event


def test_workers_killed_at_random_lose_nothing(
    js_setup: JetStreamSetup, mezmo: Any, record_property: pytest.RecordProperty
) -> None:
    keys = upload(js_setup.s3, js_setup.bucket)
    js_setup.publisher.publish(
        [json.dumps(s3_event(js_setup.bucket, key)).encode() for key in keys]
    )
    config = js_setup.config(mezmo=mezmo.url)
    report = run_chaos(
        tmp_path=js_setup.tmp, config=config, queue=js_setup.queue, keys=keys,
        source_id=f"s3://{js_setup.bucket}", ledger_url=js_setup.ledger_url, mezmo=mezmo,
        out=js_setup.out,
    )  # fmt: skip
    check(report, record_property)
    assert report.killed >= 3
    assert report.lost_files == 0
    assert report.duplicated_files == 0
    assert report.lost_mezmo == 0
    assert report.duplicated_mezmo <= report.duplicate_bound
    assert js_setup.remaining() == 0
