"""``logferry worker`` against SQS on the moto server: shipping, settling, dead letters."""

from __future__ import annotations

import json

import pytest

from logferry.engine.messages import MAX_REASON
from logferry.ledger import Status
from tests.conftest import run_cli
from tests.worker.world import WorkerSetup, s3_event, shapes


@pytest.mark.parametrize("shape", ["s3", "sns", "eventbridge", "minio", "cos"])
def test_a_message_of_each_shape_is_shipped_and_acked(world: WorkerSetup, shape: str) -> None:
    world.put("logs/a.json", 10)
    world.notify(shapes(world.bucket, "logs/a.json")[shape])
    stats, _ = world.run(world.config())
    assert len(world.shipped_lines()) == 10
    assert stats.to_dict()["messages"]["acked"] == 1
    assert world.counts() == (0, 0)


def test_a_duplicate_delivery_is_acked_without_shipping(world: WorkerSetup, mezmo) -> None:
    world.put("logs/a.json", 10)
    config = world.config(mezmo=mezmo.url)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    world.run(config)
    requests = len(mezmo.requests)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    stats, _ = world.run(config)
    assert stats.to_dict()["duplicates_skipped"] == 1
    assert stats.to_dict()["messages"]["acked"] == 1
    assert len(mezmo.requests) == requests
    assert len(mezmo.lines) == 10


def test_duplicates_handled_at_once_ship_each_object_once(world: WorkerSetup, mezmo) -> None:
    for i in range(4):
        world.put(f"logs/{i}.json", 10)
        for _ in range(3):
            world.notify(s3_event(world.bucket, f"logs/{i}.json"))
    stats, _ = world.run(world.config(mezmo=mezmo.url), concurrency=6, idle=3.0)
    assert stats.to_dict()["messages"]["dead_lettered"] == 0
    assert stats.to_dict()["messages"]["acked"] == 12
    assert len(mezmo.lines) == 40
    assert len(world.shipped_lines()) == 40


def test_visibility_is_extended_while_a_slow_sink_ships(world: WorkerSetup, mezmo) -> None:
    world.put("logs/big.json", 300)
    mezmo.delay = 1.2  # three batches of 100 lines: ~3.6 s, over the 1 s visibility
    world.notify(s3_event(world.bucket, "logs/big.json"))
    stats, _ = world.run(
        world.config(mezmo=mezmo.url), concurrency=3, visibility_timeout=1.0, max_deliveries=1
    )
    assert stats.to_dict()["messages"]["received"] == 1
    assert stats.to_dict()["messages"]["acked"] == 1
    assert len(mezmo.lines) == 300


def test_a_transient_sink_failure_is_given_back_then_shipped(world: WorkerSetup, mezmo) -> None:
    world.put("logs/a.json", 10)
    mezmo.fail_next(6, 503)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    stats, _ = world.run(
        world.config(mezmo=mezmo.url),
        retry_timeout=0.3,
        max_deliveries=20,
        retry_delay_cap=0.4,
        idle=3.0,
    )
    messages = stats.to_dict()["messages"]
    assert messages["naked"] >= 1
    assert messages["acked"] == 1
    assert len(mezmo.lines) == 10
    assert len(world.shipped_lines()) == 10


def test_a_failing_sink_gives_up_after_max_deliveries(world: WorkerSetup, mezmo) -> None:
    world.put("logs/a.json", 10)
    mezmo.fail_next(1000, 503)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    stats, ledger = world.run(
        world.config(mezmo=mezmo.url), retry_timeout=0.2, max_deliveries=2, idle=3.0
    )
    assert stats.to_dict()["messages"]["received"] == 2
    assert stats.to_dict()["messages"]["dead_lettered"] == 1
    assert [e.key for e in ledger.entries(status=Status.FAILED)] == ["logs/a.json"]
    reasons = [d["MessageAttributes"]["reason"]["StringValue"] for d in world.dead_letters()]
    assert len(reasons) == 1
    assert "after 2 deliveries" in reasons[0]
    assert world.counts() == (0, 0)


def test_a_poison_object_waits_in_the_error_queue_and_the_dlq(world: WorkerSetup) -> None:
    world.s3.put_object(
        Bucket=world.bucket, Key="logs/bad.json.gz", Body=b"\x1f\x8b\x08" + b"x" * 99
    )
    world.notify(s3_event(world.bucket, "logs/bad.json.gz"))
    config = world.config()
    stats, _ = world.run(config)
    assert stats.to_dict()["messages"]["dead_lettered"] == 1
    assert world.counts() == (0, 0)
    assert len(world.dead_letters()) == 1
    listed = run_cli("errors", "--ledger", world.ledger_url, "--json")
    assert [json.loads(line)["key"] for line in listed.stdout.splitlines()] == ["logs/bad.json.gz"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json \x1b[31m" + "x" * 5000, "not a notification"),
        (json.dumps({"hello": "world"}), "not a notification"),
        (json.dumps(s3_event("someone-elses-bucket", "secret.json")), "no source reads bucket"),
    ],
    ids=["garbage", "unknown-shape", "other-bucket"],
)
def test_an_unusable_message_is_dead_lettered_at_once(
    world: WorkerSetup, body: str, reason: str
) -> None:
    world.notify(body)
    stats, _ = world.run(world.config())
    assert stats.to_dict()["messages"]["dead_lettered"] == 1
    [letter] = world.dead_letters()
    text = letter["MessageAttributes"]["reason"]["StringValue"]
    assert reason in text
    assert "\x1b" not in text
    assert len(text) <= MAX_REASON


def test_an_object_held_by_another_runner_is_never_dead_lettered(world: WorkerSetup) -> None:
    """A live claim elsewhere is not a failure of the object: however many deliveries it
    takes, the message comes back until the holder lets go, and is then shipped."""
    import threading

    from logferry.config import load_pipeline
    from logferry.ledger import open_ledger
    from logferry.pipeline import Pipeline
    from logferry.records import ObjectInfo

    world.put("logs/a.json", 10)
    config = world.config()
    pipeline = Pipeline(load_pipeline(str(config)))
    source_id = pipeline.notified_plan(world.bucket).source.id
    pipeline.close()
    head = world.s3.head_object(Bucket=world.bucket, Key="logs/a.json")
    info = ObjectInfo("logs/a.json", head["ContentLength"], head["ETag"].strip('"'), 0)
    other = open_ledger(world.ledger_url)
    claim = other.claim(source_id, info, "another-host:4242:boot", 300.0)
    assert claim is not None
    letting_go = threading.Timer(2.5, other.release, (claim,))
    letting_go.start()
    world.notify(s3_event(world.bucket, "logs/a.json"))
    try:
        stats, _ = world.run(config, max_deliveries=2, idle=6.0)
    finally:
        letting_go.cancel()
    messages = stats.to_dict()["messages"]
    assert messages["received"] > 2
    assert messages["dead_lettered"] == 0
    assert messages["acked"] == 1
    assert len(world.shipped_lines()) == 10


def test_a_pruned_object_is_acked_without_shipping_again(world: WorkerSetup, mezmo) -> None:
    """``logferry ledger prune`` deleted its row: the prune watermark still says shipped."""
    import sqlite3

    from tests.helpers import age_object

    world.put("logs/a.json", 10)
    age_object(world.bucket, "logs/a.json", 3)
    config = world.config(mezmo=mezmo.url)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    world.run(config)
    assert len(mezmo.lines) == 10
    ledger_file = world.ledger_url.removeprefix("sqlite:///")
    with sqlite3.connect(ledger_file) as conn:
        conn.execute("UPDATE objects SET done_at = done_at - 172800")
    pruned = run_cli("ledger", "prune", "--before", "1d", "--ledger", world.ledger_url)
    assert pruned.returncode == 0, pruned.stderr
    world.notify(s3_event(world.bucket, "logs/a.json"))
    stats, _ = world.run(config)
    assert stats.to_dict()["messages"]["acked"] == 1
    assert stats.to_dict()["messages"]["naked"] == 0
    assert len(mezmo.lines) == 10
    assert world.counts() == (0, 0)


def test_a_key_written_again_is_shipped_again_without_an_etag(world: WorkerSetup) -> None:
    """A notification naming no eTag (EventBridge, COS) cannot tell versions apart: the
    worker reads the object's current eTag, so a rewritten key is not taken for done."""
    key = "logs/again.json"
    for tag, lines in (("v1", 10), ("v2", 12)):
        world.put(key, lines, tag=tag)
        world.notify(shapes(world.bucket, key)["eventbridge"])
        stats, _ = world.run(world.config())
        assert stats.to_dict()["messages"]["acked"] == 1
    tags = [row["tag"] for row in world.shipped_lines()]
    assert tags.count("v2") == 12
    world.notify(shapes(world.bucket, key)["eventbridge"])  # the same version again
    stats, _ = world.run(world.config())
    assert stats.to_dict()["duplicates_skipped"] == 1
    assert [row["tag"] for row in world.shipped_lines()].count("v2") == 12
