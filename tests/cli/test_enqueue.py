"""``logferry enqueue`` as a user runs it: real processes, killed with SIGKILL mid-way."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from logferry.queues import open_queue
from tests.conftest import REPO, run_cli
from tests.helpers import wait_for
from tests.queues.harness import ALL_KEYS, PER_DAY, NatsHarness, SqsHarness, drain


def _enqueue_args(bucket: str, endpoint: str, queue_url: str, ledger: Path) -> list[str]:
    return [
        "enqueue", f"s3://{bucket}/", "--queue", queue_url, "--endpoint-url", endpoint,
        "--ledger", f"sqlite:///{ledger}",
    ]  # fmt: skip


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "logferry", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _kill_midway(proc: subprocess.Popen[str], published: callable, at_least: int) -> None:  # type: ignore[valid-type]
    wait_for(lambda: published() >= at_least or proc.poll() is not None, timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def test_killed_then_resumed_publishes_every_key_once_to_jetstream(
    nats_harness: NatsHarness, big_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    base = _enqueue_args(big_bucket, s3_endpoint, nats_harness.url, tmp_path / "l.db")
    proc = _start([*base, "--batch", "3", "--parallel", "2", "-q"])
    _kill_midway(proc, nats_harness.remaining, 150)
    killed_at = nats_harness.remaining()
    resumed = run_cli(*base, "--json")
    queue = nats_harness.open()
    items = drain(queue, nats_harness, len(ALL_KEYS))
    counts = collections.Counter(i.key for i in items)
    assert proc.returncode == -signal.SIGKILL
    assert killed_at < len(ALL_KEYS)  # the first run really stopped mid-way
    assert resumed.returncode == 0, resumed.stderr
    assert orjson.loads(resumed.stdout)["resumed"] > 0
    assert sorted(counts) == ALL_KEYS
    assert max(counts.values()) == 1


def test_killed_then_resumed_publishes_every_key_to_sqs_with_one_batch_repeated_at_most(
    sqs_harness: SqsHarness, big_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    base = _enqueue_args(big_bucket, s3_endpoint, sqs_harness.url, tmp_path / "l.db")
    days = ("alpha/year=2020/month=06/day=02/", "beta/year=2020/month=06/day=01/")
    prefix = ["--prefix", days[0], "--prefix", days[1]]
    wanted = [k for k in ALL_KEYS if k.startswith(days)]
    proc = _start([*base, *prefix, "--batch", "5", "--parallel", "1", "-q"])
    _kill_midway(proc, sqs_harness.remaining, 30)
    resumed = run_cli(*base, *prefix)
    total = sqs_harness.remaining()
    items = drain(open_queue(sqs_harness.url), sqs_harness, total)
    counts = collections.Counter(i.key for i in items)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(counts) == wanted
    assert total - len(wanted) <= 5  # at most the batch in flight, published twice
    assert len(wanted) == 2 * PER_DAY


def test_summary_and_json(
    sqs_harness: SqsHarness, big_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    base = _enqueue_args(big_bucket, s3_endpoint, sqs_harness.url, tmp_path / "l.db")
    day = "gamma/year=2020/month=06/day=03/"
    proc = run_cli(*base, "--prefix", day, "--json")
    summary = orjson.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert summary["published"] == PER_DAY
    assert summary["listed"] == PER_DAY
    assert f"published {PER_DAY} to" in proc.stderr


@pytest.mark.parametrize(
    "queue_url",
    ["sqs://not a name", "nats://127.0.0.1:4222", "kafka://host/topic"],
)
def test_a_bad_queue_url_exits_2_with_one_line(
    queue_url: str, big_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    proc = run_cli(*_enqueue_args(big_bucket, s3_endpoint, queue_url, tmp_path / "l.db"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2
    assert len(lines) == 1, proc.stderr
    assert "queue" in lines[0]
