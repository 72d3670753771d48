"""Queues under test: SQS on the moto server (loopback), NATS JetStream on 127.0.0.1:4222.

Each test gets fresh queues (unique names), and a harness that opens the queue under test
with given options and looks at it from the side: how many messages it still holds and what
reached the dead-letter target.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from logferry.notifications import WorkItem, parse_event
from logferry.queues import WorkQueue, open_queue
from tests.helpers import wait_for


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


NATS_URL = "nats://127.0.0.1:4222"
NATS_HINT = (
    "NATS JetStream is not reachable at 127.0.0.1:4222: install it (apt-get install nats-server) "
    "and start it with JetStream on: start-stop-daemon --start --oknodo --background --exec "
    "/usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server"
)


def _nats(coro_fn: Callable[[Any], Any]) -> Any:
    """Run ``coro_fn(js)`` on a connection of its own (the harness looks from the side)."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        try:
            return await coro_fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


class NatsHarness(Harness):
    """A fresh stream (created by the queue itself) and a dead-letter subject."""

    def __init__(self) -> None:
        super().__init__()
        self.stream = f"T{uuid.uuid4().hex[:12]}"
        self.subject = f"test.{self.stream}.work"
        self.url = f"{NATS_URL}/{self.stream}?subject={self.subject}&durable=workers"
        self.dead_letter = f"test.{self.stream}.dead"

    def remaining(self) -> int:
        # A work-queue stream holds exactly the messages not acked yet (waiting or in
        # flight), with or without a consumer (a publisher alone makes none).
        async def count(js: Any) -> int:
            from nats.js.errors import NotFoundError

            try:
                info = await js.stream_info(self.stream)
            except NotFoundError:
                return 0
            return int(info.state.messages)

        return int(_nats(count))

    def dead_letters(self) -> list[bytes]:
        async def read(js: Any) -> list[bytes]:
            from nats.js.errors import NotFoundError

            try:
                name = await js.find_stream_name_by_subject(self.dead_letter)
            except NotFoundError:
                return []
            info = await js.stream_info(name)
            return [
                (await js.get_msg(name, seq)).data
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
                if info.state.messages
            ]

        return list(_nats(read))

    def cleanup(self) -> None:
        async def delete(js: Any) -> None:
            from nats.js.errors import NotFoundError

            for name in (self.stream, f"{self.stream}_DEAD_LETTERS"):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)

        _nats(delete)


@pytest.fixture()
def nats_harness() -> Iterator[NatsHarness]:
    """A fresh JetStream stream on the machine's NATS server, deleted afterwards."""
    try:
        _nats(lambda js: js.account_info())
    except Exception as exc:
        pytest.fail(f"{NATS_HINT} ({type(exc).__name__}: {exc})")
    harness = NatsHarness()
    yield harness
    harness.close()
    harness.cleanup()


# -- a bucket to enqueue (backfill tests) ----------------------------------------------

PREFIXES = ("alpha/", "beta/", "gamma/", "delta/")
DAYS = (1, 2, 3)
PER_DAY = 100  # 4 prefixes x 3 days x 100 = 1200 keys


def key_of(prefix: str, day: int, i: int) -> str:
    return f"{prefix}year=2020/month=06/day={day:02}/hour=00/obj-{i:03}.log"


ALL_KEYS = sorted(key_of(p, d, i) for p in PREFIXES for d in DAYS for i in range(PER_DAY))


@pytest.fixture(scope="session")
def big_bucket(s3_endpoint: str) -> str:
    """A bucket of 1200 small objects under four prefixes and three days (made once)."""

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    name = f"enq-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=k.encode()), ALL_KEYS))
    return name


def drain(queue: WorkQueue, harness: Harness, expected: int) -> list[WorkItem]:
    """Every message in the queue, acked, as the work items a worker would parse."""
    items: list[WorkItem] = []

    def all_in() -> bool:
        for message in queue.receive(10, 0.5):
            parsed = parse_event(message.body)
            assert all(isinstance(p, WorkItem) for p in parsed)
            items.extend(p for p in parsed if isinstance(p, WorkItem))
            queue.ack(message)
        return len(items) >= expected

    wait_for(all_in, timeout=60, interval=0, message=lambda: f"{len(items)} of {expected}")
    wait_for(lambda: harness.remaining() == 0, message="messages beyond those expected")
    return items
