"""Workers under test: SQS queues on the moto server, buckets on it, file and Mezmo sinks.

The fixtures ``world`` and ``js_world`` (JetStream) are used by ``tests/worker`` and
``tests/chaos``. ``WorkerSetup`` writes a pipeline file for one bucket, sends notifications of every shape,
and runs a worker in this process (the library) or as ``logferry worker`` (the CLI).
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from logferry.config import load_pipeline
from logferry.engine.messages import Settings
from logferry.engine.worker import Worker, WorkerStats, close_lanes, open_lanes
from logferry.ledger import Ledger, open_ledger
from logferry.pipeline import Pipeline
from logferry.queues import open_queue


def s3_event(bucket: str, key: str, size: int | None = None, etag: str | None = None) -> dict:
    """An S3 event notification, as S3 sends it to SQS (the key URL-encoded)."""
    from urllib.parse import quote_plus

    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": obj},
            }
        ]
    }


def shapes(bucket: str, key: str) -> dict[str, dict]:
    """The same object announced in every shape a queue may carry."""
    s3 = s3_event(bucket, key)
    minio = json.loads(json.dumps(s3))
    minio["Records"][0]["eventName"] = "s3:ObjectCreated:Put"
    minio["Records"][0]["eventSource"] = "minio:s3"
    return {
        "s3": s3,
        "sns": {"Type": "Notification", "MessageId": "m", "Message": json.dumps(s3)},
        "eventbridge": {
            "source": "aws.s3",
            "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key}},
        },
        "minio": minio,
        "cos": {
            "bucket": bucket,
            "key": key,
            "operation": "Object:Write",
            "notification": {
                "bucket_name": bucket,
                "object_name": key,
                "event_type": "Object:Write",
            },
        },
    }


class WorkerSetup:
    """One bucket, one notification queue (+ DLQ), a pipeline file with a file sink."""

    def __init__(self, endpoint: str, tmp_path: Path, s3: Any, bucket: str) -> None:
        self.endpoint = endpoint
        self.tmp = tmp_path
        self.s3 = s3
        self.bucket = bucket
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        name = f"w-{uuid.uuid4().hex[:10]}"
        self.queue = self.new_queue(name)
        self.dlq = self.new_queue(name + "-dlq")
        self.out = tmp_path / "out"
        self.ledger_url = f"sqlite:///{tmp_path}/ledger.db"

    def new_queue(self, name: str) -> str:
        """A fresh SQS queue's URL."""
        return str(self.sqs.create_queue(QueueName=name)["QueueUrl"])

    def config(self, *, mezmo: str | None = None, worker: str = "", prefix: str = "") -> Path:
        """Write the pipeline file: the bucket to files (and Mezmo), with ``worker:`` text."""
        sinks = ["files"] + (["mezmo"] if mezmo else [])
        mezmo_sink = f"\n  mezmo: {{url: '{mezmo}'}}" if mezmo else ""
        path = self.tmp / "pipeline.yaml"
        path.write_text(
            f"ledger: {self.ledger_url}\n"
            f"batch_lines: 100\n"
            f"sinks:\n  files: {{url: 'file://{self.out}'}}{mezmo_sink}\n"
            f"sources:\n  logs:\n    url: s3://{self.bucket}/{prefix}\n"
            f"    endpoint_url: {self.endpoint}\n    format: ndjson\n"
            f"    sinks: [{', '.join(sinks)}]\n"
            f"worker:\n  dead_letter: {self.dlq}\n  retry_delay: 0.2\n{worker}"
        )
        return path

    def put(self, key: str, lines: int = 10, *, tag: str = "", gz: bool = False) -> bytes:
        """Upload an NDJSON object of ``lines`` lines; return its body."""
        body = "".join(
            json.dumps({"n": i, "key": key, "tag": tag}) + "\n" for i in range(lines)
        ).encode()
        if gz:
            body = gzip.compress(body)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return body

    def notify(self, body: dict | str, queue: str | None = None) -> None:
        """Send one notification message."""
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=queue or self.queue, MessageBody=text)

    def shipped_lines(self) -> list[dict]:
        """Every shipped record (decoded) in the file sink's finished files."""
        if not self.out.exists():
            return []
        return [
            json.loads(json.loads(row)["line"])
            for path in sorted(self.out.rglob("*.jsonl"))
            for row in path.read_text().splitlines()
        ]

    def counts(self, queue: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=queue or self.queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def dead_letters(self) -> list[dict]:
        """Messages on the DLQ, with their attributes."""
        got = self.sqs.receive_message(
            QueueUrl=self.dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
            VisibilityTimeout=0,
        )  # fmt: skip
        return list(got.get("Messages", []))

    def run(
        self, config: Path, *, idle: float = 1.0, timeout: float = 60.0, **overrides: Any
    ) -> tuple[WorkerStats, Ledger]:
        """Run a worker in this process until the queues stay idle for ``idle`` seconds."""
        cfg = load_pipeline(str(config))
        wcfg = cfg.worker.model_copy(update=overrides)
        pipeline = Pipeline(cfg)
        ledger = open_ledger(cfg.ledger)
        lanes = open_lanes(wcfg, wcfg.queue or self.queue)
        try:
            settings = Settings(
                pipeline.options(retry_timeout=wcfg.retry_timeout),
                wcfg.retry_delay,
                wcfg.retry_delay_cap,
            )
            worker = Worker(
                ledger, lanes, pipeline.notified_plan, settings, stop=pipeline.stop,
                receive_wait=0.5,
            )  # fmt: skip
            timer = threading.Timer(timeout, worker.request_stop)
            timer.start()
            try:
                stats = worker.run(5.0, idle_exit=idle)
            finally:
                timer.cancel()
        finally:
            close_lanes(lanes)
            pipeline.close()
        return stats, ledger


class JetStreamSetup(WorkerSetup):
    """The same world with a NATS JetStream stream (on 127.0.0.1:4222) as the queue."""

    def __init__(self, endpoint: str, tmp_path: Path, s3: Any, bucket: str) -> None:
        super().__init__(endpoint, tmp_path, s3, bucket)
        from tests.queues.harness import NatsHarness

        self.harness = NatsHarness()
        self.queue = self.harness.url
        self.dlq = self.harness.dead_letter
        self.publisher = open_queue(self.queue, publish_only=True)

    def new_queue(self, name: str) -> str:
        """SQS queues only in the base class; JetStream streams are made by their URL."""
        return name

    def notify(self, body: dict | str, queue: str | None = None) -> None:
        """Publish one notification."""
        text = body if isinstance(body, str) else json.dumps(body)
        self.publisher.publish([text.encode()])

    def remaining(self) -> int:
        """Messages not yet acked (pending or in hand)."""
        return self.harness.remaining()

    def close(self) -> None:
        """Delete the streams."""
        self.publisher.close()
        self.harness.close()
        self.harness.cleanup()


@pytest.fixture()
def js_world(s3_endpoint: str, tmp_path: Path, s3: Any, bucket: str) -> Iterator[JetStreamSetup]:
    """A worker's world with JetStream as its queue (fails naming the install step if absent)."""
    from tests.queues.harness import NATS_HINT, _nats

    try:
        _nats(lambda js: js.account_info())
    except Exception as exc:
        pytest.fail(f"{NATS_HINT} ({type(exc).__name__}: {exc})")
    world = JetStreamSetup(s3_endpoint, tmp_path, s3, bucket)
    yield world
    world.close()


@pytest.fixture()
def world(s3_endpoint: str, tmp_path: Path, s3: Any, bucket: str) -> Iterator[WorkerSetup]:
    """A worker's world: a bucket, a queue and its DLQ on the moto server."""
    yield WorkerSetup(s3_endpoint, tmp_path, s3, bucket)
