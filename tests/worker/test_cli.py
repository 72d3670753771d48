"""``logferry worker`` as a process: SIGTERM with messages in hand, the summary, usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from logferry.ledger import Status, open_ledger
from tests.conftest import run_cli
from tests.helpers import wait_for
from tests.worker.world import WorkerSetup, s3_event


def _start(world: WorkerSetup, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "logferry", "worker", "--queue", world.queue, "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


@pytest.mark.parametrize(
    ("grace", "settled"), [("20", "acked"), ("0.5", "naked")], ids=["finishes", "gives-back"]
)
def test_sigterm_settles_the_messages_in_hand(
    world: WorkerSetup, mezmo, grace: str, settled: str
) -> None:
    world.put("logs/big.json", 300)
    mezmo.delay = 1.0  # three batches: ~3 s of shipping
    config = world.config(mezmo=mezmo.url)
    world.notify(s3_event(world.bucket, "logs/big.json"))
    proc = _start(world, "-c", str(config), "--shutdown-timeout", grace)
    try:
        wait_for(lambda: mezmo.requests, timeout=30, message="the worker never shipped")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["messages"][settled] == 1
    assert "1 message received" in err
    [entry] = open_ledger(world.ledger_url).entries()
    assert entry.status == (Status.DONE if settled == "acked" else Status.PENDING)


def test_no_queue_is_a_usage_error(world: WorkerSetup) -> None:
    result = run_cli("worker", "-c", str(world.config()))
    assert result.returncode == 2
    assert "--queue" in result.stderr


def test_shortcut_flags_ship_without_a_file(world: WorkerSetup) -> None:
    world.put("logs/a.json", 5)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    result = run_cli(
        "worker", "--queue", world.queue, "--source", f"s3://{world.bucket}",
        "--endpoint-url", world.endpoint, "--to", f"file://{world.out}", "--format", "ndjson",
        "--ledger", world.ledger_url, "--stop-when-idle", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lines"] == 5
    assert len(world.shipped_lines()) == 5


def test_metrics_count_the_worker_messages(world: WorkerSetup) -> None:
    import httpx

    from tests.helpers import free_port

    world.put("logs/a.json", 5)
    world.notify(s3_event(world.bucket, "logs/a.json"))
    port = free_port()
    proc = _start(world, "-c", str(world.config()), "--metrics-port", str(port))
    acked = 'logferry_worker_messages_total{lane="main",outcome="acked"} 1.0'

    def scraped() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics").text
        except httpx.HTTPError:
            return ""

    try:
        text = wait_for(lambda: acked in scraped() and scraped(), timeout=30, message=acked)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert 'logferry_worker_in_flight{lane="main"} 0.0' in text
    assert ready.status_code == 200


def test_processes_on_postgres_ship_duplicated_notifications_once(
    world: WorkerSetup, mezmo, pg_url: str
) -> None:
    world.ledger_url = pg_url
    for i in range(8):
        world.put(f"logs/{i}.json", 5)
        for _ in range(2):  # every object announced twice: the copies compete for it
            world.notify(s3_event(world.bucket, f"logs/{i}.json"))
    result = run_cli(
        "worker", "--queue", world.queue, "-c", str(world.config(mezmo=mezmo.url)),
        "--processes", "2", "--stop-when-idle", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("worker: consuming") == 1  # said once, for both copies
    assert "with 2 processes of 4 threads" in result.stderr
    assert len(mezmo.lines) == 40
    assert len(world.shipped_lines()) == 40
    ledger = open_ledger(pg_url)
    entries = ledger.entries()
    ledger.close()
    assert sorted(e.attempts for e in entries) == [1] * 8
    assert world.counts() == (0, 0)


def test_processes_stop_when_idle_fail_once_with_one_summary(world: WorkerSetup) -> None:
    for key in ("logs/a.json", "logs/b.json"):
        world.put(key, 5)
        world.notify(s3_event(world.bucket, key))
    world.notify("garbage")  # dead-lettered by whichever copy receives it: that copy exits 1
    result = run_cli(
        "worker", "--queue", world.queue, "-c", str(world.config()),
        "--processes", "2", "--stop-when-idle", "3", "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    [line] = result.stdout.splitlines()  # one JSON document, the copies' summaries added up
    summary = json.loads(line)
    assert summary["messages"] == {
        "received": 3, "acked": 2, "naked": 0, "dead_lettered": 1, "forwarded": 0
    }  # fmt: skip
    assert summary["lines"] == 10
    assert result.stderr.count("worker: 3 messages received") == 1
    assert "restarting" not in result.stderr  # a copy that ended by itself is not restarted
    assert len(world.dead_letters()) == 1


def test_queue_flag_naming_a_lane_queue_is_a_usage_error(world: WorkerSetup) -> None:
    """``--queue`` written as ``sqs://NAME`` while the slow lane has the queue's URL: one
    queue, two lanes, and forwarded objects would come straight back."""
    slow = world.new_queue(world.queue.rsplit("/", 1)[1] + "-slow")
    config = world.config(worker=f"  lanes:\n    slow: {{queue: '{slow}', min_size: 10KB}}\n")
    name = slow.rsplit("/", 1)[1]
    result = run_cli(
        "worker", "-c", str(config), "--queue", f"sqs://{name}?endpoint_url={world.endpoint}",
        "--stop-when-idle", "1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "every lane needs a queue of its own" in result.stderr
    assert "Traceback" not in result.stderr
