"""Fast and slow lanes: big objects go to their own queue, so small ones never wait."""

from __future__ import annotations

import threading

import pytest

from logferry.config import ConfigErrors, parse_pipeline
from logferry.engine.metrics import METRICS
from logferry.ledger import Status, open_ledger
from tests.helpers import wait_for
from tests.worker.world import WorkerSetup, s3_event


def _count(lane: str, outcome: str) -> float:
    value = METRICS.registry.get_sample_value(
        "logferry_worker_messages_total", {"lane": lane, "outcome": outcome}
    )
    return value or 0.0


def test_a_big_object_ships_in_the_slow_lane_while_small_ones_pass(
    world: WorkerSetup, mezmo
) -> None:
    slow = world.new_queue(world.queue.rsplit("/", 1)[1] + "-slow")
    world.put("logs/big.json", 800)  # 8 batches at 0.4 s: over 3 s in the slow lane
    for i in range(5):
        world.put(f"logs/small-{i}.json", 3)
    mezmo.delay = 0.4
    config = world.config(
        mezmo=mezmo.url,
        worker=f"  concurrency: 1\n  lanes:\n    slow: {{queue: '{slow}', min_size: 10KB}}\n",
    )
    before = _count("slow", "acked")
    # The big one first, with no size in its notification: the worker asks S3 (HEAD).
    world.notify(s3_event(world.bucket, "logs/big.json"))
    for i in range(5):
        world.notify(s3_event(world.bucket, f"logs/small-{i}.json", size=100))
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(world.run(config, idle=2.0)))
    thread.start()
    ledger = open_ledger(world.ledger_url)

    def smalls_done_big_not() -> bool:
        rows = {e.key: e.status for e in ledger.entries()}
        smalls = all(rows.get(f"logs/small-{i}.json") == Status.DONE for i in range(5))
        return smalls and rows.get("logs/big.json") != Status.DONE

    wait_for(smalls_done_big_not, timeout=30, message="small objects waited for the big one")
    thread.join(timeout=60)
    stats = result[0][0]  # type: ignore[index]
    assert stats.to_dict()["objects_forwarded"] == 1
    assert _count("slow", "acked") - before == 1
    assert len(world.shipped_lines()) == 815
    assert world.counts(slow) == (0, 0)


def test_lanes_need_queues_of_their_own() -> None:
    text = (
        "sources: {a: {url: 's3://b', sinks: drop}}\n"
        "worker:\n  queue: sqs://q\n  lanes: {slow: {queue: sqs://q, min_size: 1GB}}\n"
    )
    with pytest.raises(ConfigErrors, match="queue of its own"):
        parse_pipeline(text)


def test_lane_sizes_read_units() -> None:
    text = (
        "sources: {a: {url: 's3://b', sinks: drop}}\n"
        "worker:\n  lanes: {slow: {queue: sqs://s, min_size: 1.5GiB}}\n"
    )
    assert parse_pipeline(text).worker.lanes["slow"].min_size == 1610612736


def test_validate_lists_the_lanes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import run_cli

    path = tmp_path / "p.yaml"
    path.write_text(
        f"sinks: {{f: {{url: 'file://{tmp_path}/out'}}}}\n"
        "sources: {a: {url: 's3://b', sinks: [f]}}\n"
        "worker:\n  queue: sqs://q\n  lanes: {slow: {queue: sqs://big, min_size: 1MB}}\n"
    )
    result = run_cli("validate", "-c", str(path))
    assert "lane slow: objects of 1,000,000 bytes or more → sqs://big, 1 thread" in result.stdout


def test_a_lane_that_keeps_refusing_ends_in_the_dead_letters(world: WorkerSetup) -> None:
    """Forwarding that fails every time (the lane's queue is gone) must not loop for ever."""
    slow = world.new_queue(world.queue.rsplit("/", 1)[1] + "-gone")
    world.put("logs/big.json", 800)
    config = world.config(
        worker=f"  lanes:\n    slow: {{queue: '{slow}', min_size: 10KB}}\n",
    )

    def lane_gone_then_notified() -> None:  # after the worker opened its lanes
        world.sqs.delete_queue(QueueUrl=slow)
        world.notify(s3_event(world.bucket, "logs/big.json"))

    timer = threading.Timer(1.5, lane_gone_then_notified)
    timer.start()
    try:
        stats, _ = world.run(config, max_deliveries=2, idle=4.0)
    finally:
        timer.cancel()
    messages = stats.to_dict()["messages"]
    assert messages["dead_lettered"] == 1
    reasons = [d["MessageAttributes"]["reason"]["StringValue"] for d in world.dead_letters()]
    assert len(reasons) == 1
    assert "forwarding to a lane failed" in reasons[0]
    assert world.counts() == (0, 0)
