"""NATS JetStream specifics: URL parts, dedupe by message id, secrets kept out of errors."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

import pytest

from logferry.errors import ConfigError
from logferry.queues import open_queue
from logferry.queues.nats import NatsQueue
from tests.helpers import free_port, wait_for
from tests.queues.harness import NatsHarness, _nats
from tests.queues.test_contract import _receive_all


def test_the_stream_and_consumer_are_created_from_the_url(nats_harness: NatsHarness) -> None:
    queue = nats_harness.open(visibility_timeout=45)
    assert isinstance(queue, NatsQueue)
    assert queue.where.stream == nats_harness.stream
    assert queue.where.subject == nats_harness.subject
    assert _ack_wait(nats_harness) == 45  # the consumer "workers" exists, with that timeout


def test_identity_is_server_stream_and_subject(nats_harness: NatsHarness) -> None:
    """The same queue written with other options is one queue (for lanes: no sharing)."""
    first = nats_harness.open()
    other = open_queue(nats_harness.url + "&visibility_timeout=30")
    try:
        assert (
            first.identity
            == other.identity
            == (f"nats://127.0.0.1:4222/{nats_harness.stream}/{nats_harness.subject}")
        )
    finally:
        other.close()


def test_a_publisher_leaves_the_consumer_to_the_workers(nats_harness: NatsHarness) -> None:
    """``logferry enqueue`` before any worker: the worker's visibility timeout is the
    consumer's ack wait, not the publisher's default (60 s, which workers had to adopt, so a
    killed worker's messages came back a minute later)."""
    publisher = open_queue(nats_harness.url, publish_only=True)
    try:
        publisher.publish([b"one"])
        assert nats_harness.remaining() == 1
        with pytest.raises(Exception, match="consumer not found"):
            _ack_wait(nats_harness)  # the publisher made none
        worker = nats_harness.open(visibility_timeout=7)
        assert worker.options.visibility_timeout == 7
        assert _ack_wait(nats_harness) == 7
        assert [m.body for m in _receive_all(worker, 1)] == [b"one"]
    finally:
        publisher.close()


def test_publish_with_ids_drops_duplicates(nats_harness: NatsHarness) -> None:
    queue = nats_harness.open()
    queue.publish([b"a", b"b"], ids=["bucket/a", "bucket/b"])
    queue.publish([b"a", b"c"], ids=["bucket/a", "bucket/c"])
    wait_for(lambda: nats_harness.remaining() == 3, message="not 3 messages queued")
    got = _receive_all(queue, 3)
    assert sorted(m.body for m in got) == [b"a", b"b", b"c"]


def test_each_receiving_thread_pulls_through_its_own_subscription(
    nats_harness: NatsHarness,
) -> None:
    queue = nats_harness.open()
    assert isinstance(queue, NatsQueue)
    for _ in range(4):  # one after another: a shared subscription would be made once
        thread = threading.Thread(target=lambda: [queue.receive(1, 0.05) for _ in range(2)])
        thread.start()
        thread.join()
    assert len({id(s) for s in queue._subscriptions}) == 4


def _ack_wait(harness: NatsHarness) -> float:
    async def read(js: Any) -> float:
        return float((await js.consumer_info(harness.stream, "workers")).config.ack_wait)

    return float(_nats(read))


def test_opening_again_keeps_the_consumers_ack_wait(
    nats_harness: NatsHarness, caplog: pytest.LogCaptureFixture
) -> None:
    nats_harness.open(visibility_timeout=5)
    with caplog.at_level(logging.WARNING, logger="logferry"):
        second = nats_harness.open(visibility_timeout=60)
    assert _ack_wait(nats_harness) == 5
    assert second.options.visibility_timeout == 5
    assert "ack_wait 5 s, not the requested visibility timeout 60 s" in caplog.text


def test_opening_with_the_same_timeout_does_not_warn(
    nats_harness: NatsHarness, caplog: pytest.LogCaptureFixture
) -> None:
    nats_harness.open(visibility_timeout=5)
    with caplog.at_level(logging.WARNING, logger="logferry"):
        second = nats_harness.open(visibility_timeout=5)
    assert second.options.visibility_timeout == 5
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("nats://127.0.0.1:4222", "no stream name"),
        ("nats://127.0.0.1:4222/", "no stream name"),
        ("nats://127.0.0.1:4222/bad.stream", "stream name may hold only letters"),
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


def _connections_to_nats() -> int:
    """This process's established TCP connections to port 4222 (Linux /proc)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            ours.add(os.readlink(f"/proc/self/fd/{fd}"))
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if remote.endswith(":107E") and state == "01" and f"socket:[{inode}]" in ours:
                count += 1
    return count


def test_a_failed_setup_closes_its_connection(nats_harness: NatsHarness) -> None:
    before = _connections_to_nats()
    with pytest.raises(ConfigError) as caught:  # fails after connecting: a wildcard subject
        open_queue(nats_harness.url + "&dead_letter=dead.*")
    assert "dead_letter" in str(caught.value)
    wait_for(lambda: _connections_to_nats() == before, timeout=5, message="connection left open")


def test_an_unreachable_server_is_a_config_error_without_the_password() -> None:
    url = f"nats://worker:s3cr3t-pw@127.0.0.1:{free_port()}/S"
    with pytest.raises(ConfigError) as caught:
        open_queue(url)
    message = str(caught.value)
    assert "cannot connect" in message
    assert "s3cr3t-pw" not in message
    assert "\n" not in message
