"""Queues under test: SQS on the moto server (loopback), NATS JetStream on 127.0.0.1:4222.

Each test gets fresh queues (unique names), and a harness that opens the queue under test
with given options and looks at it from the side: how many messages it still holds and what
reached the dead-letter target.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from logferry.queues import WorkQueue, open_queue


class Harness:
    """One queue under test, its dead-letter target, and ways to look at both."""

    url: str
    dead_letter: str

    def open(self, **options: Any) -> WorkQueue:
        """The queue under test, opened as a worker would."""
        queue = open_queue(self.url, options)
        self._opened.append(queue)
        return queue

    def remaining(self) -> int:
        """Messages not yet acked (waiting or in flight)."""
        raise NotImplementedError

    def dead_letters(self) -> list[bytes]:
        """Bodies that reached the dead-letter target."""
        raise NotImplementedError

    def close(self) -> None:
        for queue in self._opened:
            queue.close()

    def __init__(self) -> None:
        self._opened: list[WorkQueue] = []


class SqsHarness(Harness):
    """A fresh standard queue and a dead-letter queue on the moto server."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.client = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        name = f"q-{uuid.uuid4().hex[:12]}"
        self.queue_url = self.client.create_queue(QueueName=name)["QueueUrl"]
        self.dlq_url = self.client.create_queue(QueueName=name + "-dlq")["QueueUrl"]
        self.url = self.queue_url  # http://127.0.0.1:PORT/ACCOUNT/NAME
        self.dead_letter = self.dlq_url

    def remaining(self) -> int:
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def dead_letters(self) -> list[bytes]:
        found = self.client.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        return [m["Body"].encode() for m in found.get("Messages", [])]


@pytest.fixture()
def sqs_harness(s3_endpoint: str) -> Iterator[SqsHarness]:
    """Fresh SQS queues on the moto server that also serves S3 (one server, all services)."""
    harness = SqsHarness(s3_endpoint)
    yield harness
    harness.close()


HarnessFactory = Callable[[], Harness]
