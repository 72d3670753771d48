"""The visibility keeper's schedule: when it extends a held message, and when it tries again."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from logferry.engine.visibility import VisibilityKeeper
from logferry.queues.base import Message, QueueError, QueueOptions, WorkQueue


class FlakyQueue(WorkQueue):
    """Records extensions; they fail while ``failing`` (only the keeper's schedule is tested)."""

    name = "flaky"
    options = QueueOptions()

    def __init__(self) -> None:
        self.failing = True
        self.extended: list[float] = []

    def extend(self, message: Message, seconds: float) -> None:
        self.extended.append(seconds)
        if self.failing:
            raise QueueError("the queue is unreachable")

    def receive(self, max_messages: int, wait: float) -> list[Message]:
        raise NotImplementedError

    def ack(self, message: Message) -> None:
        raise NotImplementedError

    def nak(self, message: Message, delay: float) -> None:
        raise NotImplementedError

    def dead_letter(self, message: Message, reason: str) -> None:
        raise NotImplementedError

    def publish(self, bodies: Sequence[bytes], ids: Sequence[str] | None = None) -> None:
        raise NotImplementedError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _tries_at(times: list[float]) -> list[int]:
    """Hold one message (30 s timeout) and run a keeper round at each of ``times``; return
    the number of extension attempts after each round."""
    clock, queue = Clock(), FlakyQueue()
    keeper = VisibilityKeeper(clock=clock)
    keeper.hold(queue, Message("m1", b"{}", 1, None), 30.0)
    attempts = []
    for t in times:
        clock.now = t
        keeper.extend_due()
        attempts.append(len(queue.extended))
    return attempts


def test_a_failed_extension_is_retried_after_a_doubling_delay_not_every_tick() -> None:
    # due at 10 s (a third of 30); fails; retried 1 s later, then 2 s after that, then 4 s
    attempts = _tries_at([9.5, 10, 10.5, 11, 11.5, 12.5, 13, 16.5, 17])
    assert attempts == [0, 1, 1, 2, 2, 2, 3, 3, 4]


def test_the_retry_delay_stops_growing_at_a_third_of_the_timeout() -> None:
    times = [10.0]
    for _ in range(8):  # delays 1, 2, 4, 8, then 10 (the cap) each time
        times.append(times[-1] + min(2 ** (len(times) - 1), 10))
    attempts = _tries_at([*times, times[-1] + 9.9])
    assert attempts == [*range(1, 10), 9]


def test_a_failing_message_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="logferry"):
        _tries_at([10, 11, 13, 17])
    failures = [r for r in caplog.records if "extending message m1 failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING] + [logging.DEBUG] * 3


def test_after_a_failure_a_success_returns_to_the_normal_interval() -> None:
    clock, queue = Clock(), FlakyQueue()
    keeper = VisibilityKeeper(clock=clock)
    keeper.hold(queue, Message("m1", b"{}", 1, None), 30.0)
    clock.now = 10
    keeper.extend_due()  # fails: retried at 11
    queue.failing = False
    clock.now = 11
    keeper.extend_due()  # works: next at 21
    clock.now = 20.9
    keeper.extend_due()
    assert len(queue.extended) == 2
    clock.now = 21
    keeper.extend_due()
    assert len(queue.extended) == 3
