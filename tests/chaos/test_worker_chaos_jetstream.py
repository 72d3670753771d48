"""Chaos on NATS JetStream: the SQS chaos test's workers, kills and checks, with the
machine's JetStream server as the queue, filled by ``logferry enqueue``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.harness import check, run_chaos, upload
from tests.conftest import run_cli
from tests.worker.conftest import JetStreamSetup


def test_workers_killed_at_random_lose_nothing(
    js_setup: JetStreamSetup, mezmo: Any, record_property: pytest.RecordProperty
) -> None:
    keys = upload(js_setup.s3, js_setup.bucket)
    config = js_setup.config(mezmo=mezmo.url)
    queued = run_cli("enqueue", "-c", str(config), "logs", "--queue", js_setup.queue)
    assert queued.returncode == 0, queued.stderr
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
