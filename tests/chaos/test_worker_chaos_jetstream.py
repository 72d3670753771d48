"""Chaos on NATS JetStream: the SQS chaos test's workers, kills and checks, with the
machine's JetStream server as the queue, filled by ``logferry enqueue``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.harness import check, run_chaos, upload
from tests.conftest import run_cli
from tests.worker.world import JetStreamSetup


def test_workers_killed_at_random_lose_nothing(
    js_world: JetStreamSetup, mezmo: Any, record_property: pytest.RecordProperty
) -> None:
    keys = upload(js_world.s3, js_world.bucket)
    config = js_world.config(mezmo=mezmo.url)
    queued = run_cli("enqueue", "-c", str(config), "logs", "--queue", js_world.queue)
    assert queued.returncode == 0, queued.stderr
    report = run_chaos(
        tmp_path=js_world.tmp, config=config, queue=js_world.queue, keys=keys,
        source_id=f"s3://{js_world.bucket}", ledger_url=js_world.ledger_url, mezmo=mezmo,
        out=js_world.out,
    )  # fmt: skip
    check(report, record_property)
    assert js_world.remaining() == 0
