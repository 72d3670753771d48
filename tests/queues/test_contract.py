"""The work-queue contract, one suite for every queue: SQS (moto server) and NATS JetStream."""

from __future__ import annotations

import threading
import time

import pytest

from logferry.queues import Message, WorkQueue
from tests.helpers import wait_for
from tests.queues.harness import Harness

BACKENDS = ["sqs", "nats"]


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Harness:
    """The harness of each queue kind in turn."""
    return request.getfixturevalue(f"{request.param}_harness")  # type: ignore[no-any-return]


def _receive_one(queue: WorkQueue, timeout: float = 15) -> Message:
    def one() -> Message | None:
        got = queue.receive(1, 1)
        return got[0] if got else None

    return wait_for(one, timeout=timeout, interval=0, message="no message received")


def _receive_all(queue: WorkQueue, count: int, timeout: float = 20) -> list[Message]:
    got: list[Message] = []

    def enough() -> bool:
        got.extend(queue.receive(10, 1))
        return len(got) >= count

    wait_for(enough, timeout=timeout, interval=0, message=lambda: f"{len(got)} of {count}")
    return got


def test_receive_then_ack_removes_the_message(harness: Harness) -> None:
    queue = harness.open()
    queue.publish([b'{"n": 1}'])
    message = _receive_one(queue)
    queue.ack(message)
    assert message.body == b'{"n": 1}'
    assert message.deliveries == 1
    wait_for(lambda: harness.remaining() == 0, message="the acked message is still queued")


def test_extend_keeps_a_message_hidden_past_its_visibility_timeout(harness: Harness) -> None:
    queue = harness.open(visibility_timeout=1)
    queue.publish([b"slow"])
    slow = _receive_one(queue)
    queue.extend(slow, 8)
    # A marker given back with a delay longer than the visibility timeout: once it is back,
    # the slow message would have been back too, had extend not kept it hidden.
    queue.publish([b"marker"])
    marker = _receive_one(queue)
    queue.nak(marker, 2.5)
    seen: list[bytes] = []

    def marker_back() -> bool:
        got = queue.receive(10, 1)
        seen.extend(m.body for m in got)
        return b"marker" in seen

    wait_for(marker_back, timeout=20, interval=0, message="the marker never came back")
    assert b"slow" not in seen


def test_nak_delivers_again_after_the_delay_with_one_more_delivery(harness: Harness) -> None:
    queue = harness.open(visibility_timeout=30)
    queue.publish([b"retry me"])
    first = _receive_one(queue)
    started = time.monotonic()
    queue.nak(first, 1)
    again = _receive_one(queue)
    waited = time.monotonic() - started
    queue.ack(again)
    assert again.body == b"retry me"
    assert again.deliveries == 2
    assert waited >= 0.9


def test_dead_letter_lands_in_the_target_and_is_not_delivered_again(harness: Harness) -> None:
    queue = harness.open(dead_letter=harness.dead_letter)
    queue.publish([b'{"poison": true}'])
    message = _receive_one(queue)
    queue.dead_letter(message, "failed 5 times: decode error")
    letters = wait_for(harness.dead_letters, message="nothing in the dead-letter target")
    assert letters == [b'{"poison": true}']
    wait_for(lambda: harness.remaining() == 0, message="the dead letter is still queued")


def test_publish_batches_many_messages(harness: Harness) -> None:
    queue = harness.open()
    bodies = [f'{{"n": {i}}}'.encode() for i in range(27)]
    queue.publish(bodies)
    got = _receive_all(queue, 27)
    for message in got:
        queue.ack(message)
    assert sorted(m.body for m in got) == sorted(bodies)


def test_two_threads_receive_disjoint_messages(harness: Harness) -> None:
    queue = harness.open(visibility_timeout=60)
    bodies = [f"m{i}".encode() for i in range(40)]
    queue.publish(bodies)
    taken: list[list[bytes]] = [[], []]
    lock = threading.Lock()
    total = [0]

    def consume(slot: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if total[0] >= len(bodies):
                    return
            for message in queue.receive(5, 1):
                queue.ack(message)
                taken[slot].append(message.body)
                with lock:
                    total[0] += 1

    threads = [threading.Thread(target=consume, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(taken[0]).isdisjoint(taken[1])
    assert sorted(taken[0] + taken[1]) == sorted(bodies)
