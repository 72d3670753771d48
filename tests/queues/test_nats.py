"""NATS JetStream specifics: URL parts, dedupe by message id, secrets kept out of errors."""

from __future__ import annotations

import pytest

from logferry.errors import ConfigError
from logferry.queues import open_queue
from logferry.queues.nats import NatsQueue
from tests.helpers import free_port, wait_for
from tests.queues.harness import NatsHarness
from tests.queues.test_contract import _receive_all


def test_the_stream_and_consumer_are_created_from_the_url(nats_harness: NatsHarness) -> None:
    queue = nats_harness.open(visibility_timeout=45)
    assert isinstance(queue, NatsQueue)
    assert queue.where.stream == nats_harness.stream
    assert queue.where.subject == nats_harness.subject
    assert nats_harness.remaining() == 0  # the consumer "workers" exists


def test_publish_with_ids_drops_duplicates(nats_harness: NatsHarness) -> None:
    queue = nats_harness.open()
    queue.publish([b"a", b"b"], ids=["bucket/a", "bucket/b"])
    queue.publish([b"a", b"c"], ids=["bucket/a", "bucket/c"])
    wait_for(lambda: nats_harness.remaining() == 3, message="not 3 messages queued")
    got = _receive_all(queue, 3)
    assert sorted(m.body for m in got) == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("nats://127.0.0.1:4222", "no stream name"),
        ("nats://127.0.0.1:4222/bad.stream", "no stream name"),
        ("nats://127.0.0.1:4222/S?subject=a.*", "subject"),
        ("nats://127.0.0.1:4222/S?durable=a.b", "durable"),
        ("nats://127.0.0.1:4222/S?shape=round", "unknown parameter 'shape'"),
    ],
)
def test_a_bad_url_is_a_one_line_config_error(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_queue(url)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unreachable_server_is_a_config_error_without_the_password() -> None:
    url = f"nats://worker:s3cr3t-pw@127.0.0.1:{free_port()}/S"
    with pytest.raises(ConfigError) as caught:
        open_queue(url)
    message = str(caught.value)
    assert "cannot connect" in message
    assert "s3cr3t-pw" not in message
    assert "\n" not in message
