"""``logferry worker`` on NATS JetStream (the machine's server at 127.0.0.1:4222)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.helpers import wait_for
from tests.worker.world import JetStreamSetup, s3_event, shapes


@pytest.mark.parametrize("shape", ["sns"])
def test_a_message_is_shipped_and_acked(js_world: JetStreamSetup, shape: str) -> None:
    js_world.put("logs/a.json", 10)
    js_world.notify(shapes(js_world.bucket, "logs/a.json")[shape])
    stats, _ = js_world.run(js_world.config())
    assert len(js_world.shipped_lines()) == 10
    assert stats.to_dict()["messages"]["acked"] == 1
    assert js_world.remaining() == 0


def test_a_duplicate_is_acked_without_shipping(js_world: JetStreamSetup, mezmo) -> None:
    js_world.put("logs/a.json", 10)
    config = js_world.config(mezmo=mezmo.url)
    js_world.notify(s3_event(js_world.bucket, "logs/a.json"))
    js_world.notify(s3_event(js_world.bucket, "logs/a.json"))
    stats, _ = js_world.run(config, concurrency=1)
    assert stats.to_dict()["duplicates_skipped"] == 1
    assert len(mezmo.lines) == 10


def test_visibility_is_extended_while_a_slow_sink_ships(js_world: JetStreamSetup, mezmo) -> None:
    js_world.put("logs/big.json", 300)
    mezmo.delay = 1.2
    js_world.notify(s3_event(js_world.bucket, "logs/big.json"))
    stats, _ = js_world.run(
        js_world.config(mezmo=mezmo.url), concurrency=3, visibility_timeout=1.0, max_deliveries=1
    )
    assert stats.to_dict()["messages"]["received"] == 1
    assert len(mezmo.lines) == 300


def test_a_transient_failure_is_redelivered_then_shipped(js_world: JetStreamSetup, mezmo) -> None:
    js_world.put("logs/a.json", 10)
    mezmo.fail_next(6, 503)
    js_world.notify(s3_event(js_world.bucket, "logs/a.json"))
    stats, _ = js_world.run(
        js_world.config(mezmo=mezmo.url),
        retry_timeout=0.3,
        max_deliveries=20,
        retry_delay_cap=0.4,
        idle=3.0,
    )
    assert stats.to_dict()["messages"]["naked"] >= 1
    assert len(mezmo.lines) == 10


def test_a_poison_object_is_dead_lettered_and_listed(js_world: JetStreamSetup) -> None:
    js_world.s3.put_object(
        Bucket=js_world.bucket, Key="logs/bad.json.gz", Body=b"\x1f\x8b\x08" + b"x" * 99
    )
    js_world.notify(s3_event(js_world.bucket, "logs/bad.json.gz"))
    stats, _ = js_world.run(js_world.config())
    assert stats.to_dict()["messages"]["dead_lettered"] == 1
    assert wait_for(lambda: len(js_world.harness.dead_letters()) == 1, timeout=5)
    assert js_world.remaining() == 0
    listed = run_cli("errors", "--ledger", js_world.ledger_url, "--json")
    assert [json.loads(line)["key"] for line in listed.stdout.splitlines()] == ["logs/bad.json.gz"]
