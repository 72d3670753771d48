"""SQS specifics: URL forms, options in the query, size-bounded batches, FIFO dedupe, redrive."""

from __future__ import annotations

import uuid

import orjson
import pytest

from logferry.errors import ConfigError
from logferry.queues import open_queue
from logferry.queues.sqs import SqsQueue
from tests.helpers import wait_for
from tests.queues.harness import SqsHarness
from tests.queues.test_contract import _receive_all, _receive_one


def test_a_name_is_resolved_with_the_endpoint_from_the_query(
    sqs_harness: SqsHarness, s3_endpoint: str
) -> None:
    name = sqs_harness.queue_url.rsplit("/", 1)[1]
    queue = open_queue(f"sqs://{name}?endpoint_url={s3_endpoint}&visibility_timeout=120")
    assert isinstance(queue, SqsQueue)
    assert queue.url == sqs_harness.queue_url
    assert queue.options.visibility_timeout == 120
    queue.close()


def test_explicit_options_win_over_the_query(sqs_harness: SqsHarness) -> None:
    queue = open_queue(
        sqs_harness.url + "?max_deliveries=3&visibility_timeout=9", {"max_deliveries": 7}
    )
    assert queue.options.max_deliveries == 7
    assert queue.options.visibility_timeout == 9
    queue.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqs://", "not a queue name"),
        ("sqs://bad name!", "not a queue name"),
        ("https://example.com/not/a/queue/url", "not an SQS queue URL"),
        ("sqs://q?colour=blue", "unknown parameter 'colour'"),
        ("sqs://q?visibility_timeout=-1", "visibility_timeout"),
        ("https://AKID:s3cr3t@sqs.us-east-1.amazonaws.com/1234/q", "credentials"),
    ],
)
def test_a_bad_url_is_a_one_line_config_error(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_queue(url)
    message = str(caught.value)
    assert words in message
    assert f"queue '{url.partition('?')[0].replace('s3cr3t', '***')}" in message  # as given
    assert "\n" not in message
    assert "s3cr3t" not in message


def test_a_missing_queue_is_a_one_line_config_error(s3_endpoint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_queue(f"sqs://nope-{uuid.uuid4().hex[:8]}?endpoint_url={s3_endpoint}")
    assert "does not exist" in str(caught.value)


def test_publish_splits_batches_at_256_kib(sqs_harness: SqsHarness) -> None:
    queue = sqs_harness.open()
    bodies = [bytes([ord("a") + i]) * (100 * 1024) for i in range(3)]  # 300 KiB in all
    queue.publish(bodies)
    got = _receive_all(queue, 3)
    assert sorted(m.body for m in got) == bodies


def test_a_body_over_256_kib_is_refused_before_sending(sqs_harness: SqsHarness) -> None:
    queue = sqs_harness.open()
    with pytest.raises(Exception, match="SQS takes 262144"):
        queue.publish([b"x" * (256 * 1024 + 1)])


def test_a_fifo_queue_drops_a_body_published_again_under_the_same_id(
    sqs_harness: SqsHarness,
) -> None:
    url = sqs_harness.client.create_queue(
        QueueName=f"f-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    queue = open_queue(url)
    queue.publish([b"one", b"two"], ids=["bucket/a", "bucket/b"])
    queue.publish([b"one", b"three"], ids=["bucket/a", "bucket/c"])
    got = _receive_all(queue, 3)
    for message in got:
        queue.ack(message)
    assert sorted(m.body for m in got) == [b"one", b"three", b"two"]
    attrs = sqs_harness.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"  # the duplicate was never queued
    queue.close()


def test_without_dead_letter_the_redrive_policy_target_is_used(sqs_harness: SqsHarness) -> None:
    arn = sqs_harness.client.get_queue_attributes(
        QueueUrl=sqs_harness.dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    policy = {"deadLetterTargetArn": arn, "maxReceiveCount": "5"}
    sqs_harness.client.set_queue_attributes(
        QueueUrl=sqs_harness.queue_url, Attributes={"RedrivePolicy": orjson.dumps(policy).decode()}
    )
    queue = sqs_harness.open()
    queue.publish([b"poison"])
    queue.dead_letter(_receive_one(queue), "bad")
    assert wait_for(sqs_harness.dead_letters) == [b"poison"]


@pytest.mark.parametrize(("max_receive", "warned"), [("3", True), ("50", False)])
def test_a_redrive_policy_stricter_than_max_deliveries_is_warned_about(
    sqs_harness: SqsHarness, caplog: pytest.LogCaptureFixture, max_receive: str, warned: bool
) -> None:
    arn = sqs_harness.client.get_queue_attributes(
        QueueUrl=sqs_harness.dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    policy = {"deadLetterTargetArn": arn, "maxReceiveCount": max_receive}
    sqs_harness.client.set_queue_attributes(
        QueueUrl=sqs_harness.queue_url, Attributes={"RedrivePolicy": orjson.dumps(policy).decode()}
    )
    with caplog.at_level("WARNING", logger="logferry"):
        sqs_harness.open(max_deliveries=5)
    assert ("after 3 receives" in caplog.text) is warned
