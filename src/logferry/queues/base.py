"""The work-queue contract: competing consumers of object notifications.

A worker receives messages, ships the objects they name, and then settles each message
exactly once: ``ack`` when the ledger says every object is done, ``nak`` with a delay on a
transient error, ``dead_letter`` after too many deliveries. While a message is being worked
on, ``extend`` keeps it invisible to the other consumers (SQS ChangeMessageVisibility,
JetStream in-progress), so a slow object is not handed to a second worker.

At-least-once is the queue's promise; the ledger turns it into exactly-once shipping: a
message whose objects are already done is acked without shipping them again.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from logferry import registry
from logferry.errors import LogferryError

__all__ = ["Message", "QueueError", "QueueOptions", "WorkQueue", "open_queue"]


class QueueError(LogferryError):
    """A queue call failed (unreachable, refused, the message gone); one line, no secrets."""


class QueueOptions(BaseModel):
    """Options every queue takes (a queue's own model may add fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: How long a received message stays invisible before another consumer may get it.
    visibility_timeout: float = Field(default=60.0, gt=0)
    #: Deliveries after which a message is dead-lettered instead of retried.
    max_deliveries: int = Field(default=5, ge=1)
    #: Where dead letters go, when the queue itself has no redrive policy (an SQS queue URL,
    #: a JetStream subject); ``None``: only the ledger's error queue records them.
    dead_letter: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None


@dataclass(slots=True)
class Message:
    """One received message: its body and how many times it has been delivered."""

    id: str
    body: bytes
    #: 1 on the first delivery.
    deliveries: int
    #: The queue's own handle to settle it (an SQS receipt handle, a NATS message).
    handle: object


class WorkQueue(abc.ABC):
    """One queue, thread-safe: several worker threads receive and settle concurrently."""

    #: The queue's URL with secrets removed, for messages and status.
    name: str
    options: QueueOptions

    @property
    def identity(self) -> str:
        """What names the queue itself, however its URL was written (``sqs://q`` and
        ``https://sqs…/ACCOUNT/q`` are one queue): two lanes must not share it."""
        return self.name

    @abc.abstractmethod
    def receive(self, max_messages: int, wait: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``wait`` seconds for the first."""

    @abc.abstractmethod
    def extend(self, message: Message, seconds: float) -> None:
        """Keep ``message`` invisible to other consumers for ``seconds`` more."""

    @abc.abstractmethod
    def ack(self, message: Message) -> None:
        """Remove ``message`` for good: its work is done (or was done before)."""

    @abc.abstractmethod
    def nak(self, message: Message, delay: float) -> None:
        """Give ``message`` back, to be delivered again after ``delay`` seconds."""

    @abc.abstractmethod
    def dead_letter(self, message: Message, reason: str) -> None:
        """Stop redelivering ``message``: send it to the dead-letter target, if any, and ack."""

    @abc.abstractmethod
    def publish(self, bodies: Sequence[bytes], ids: Sequence[str] | None = None) -> None:
        """Send ``bodies`` as messages, batched as the queue's API allows; raise on failure.

        ``ids`` (one per body) let a queue that can drop duplicates do so: a body published
        again under the same id within the queue's window is delivered once (JetStream's
        ``Nats-Msg-Id``, an SQS FIFO queue's deduplication id). Other queues ignore them.
        """

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


def open_queue(
    url: str,
    options: QueueOptions | dict[str, object] | None = None,
    *,
    publish_only: bool = False,
) -> WorkQueue:
    """Open the queue ``url`` names (``sqs://…``, ``https://sqs.…``, ``nats://…``).

    ``publish_only`` (``logferry enqueue``): nothing of the consumers' side is made or read.
    A JetStream consumer made by a publisher would carry the publisher's visibility
    timeout, which every worker then has to adopt.
    """
    queue = registry.open(url, "queue", options, publish_only=publish_only)
    assert isinstance(queue, WorkQueue)
    return queue
