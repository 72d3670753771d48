"""Amazon SQS (and moto / LocalStack endpoints) as a work queue.

URLs: ``sqs://QUEUE`` (a name, resolved with GetQueueUrl), the queue URL itself
(``https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE``), or a local endpoint's queue URL
(``http://127.0.0.1:PORT/ACCOUNT/QUEUE``). Options may follow in the query string:
``?visibility_timeout=120&max_deliveries=5&dead_letter=NAME_OR_URL&endpoint_url=…``.

Dead letters go to ``dead_letter`` if given, else to the queue's own RedrivePolicy target
(sent there at once rather than after SQS counts ``maxReceiveCount`` receives), else they are
only deleted and the ledger's error queue keeps the record. FIFO queues (``….fifo``) take the
publisher's ids as deduplication ids, and each message its own group, so workers still run
in parallel.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from logferry.errors import ConfigError
from logferry.queues.base import Message, QueueError, QueueOptions, WorkQueue
from logferry.queues.options import split_options
from logferry.redact import redact, redact_url
from logferry.registry import Component

log = logging.getLogger("logferry")

__all__ = ["MAX_BATCH", "MAX_BYTES", "SqsQueue"]

#: SendMessageBatch takes at most 10 entries and 256 KiB in all (so does one message).
MAX_BATCH = 10
MAX_BYTES = 256 * 1024
#: ReceiveMessage long polls for at most 20 s; visibility is at most 12 hours.
MAX_WAIT = 20
MAX_VISIBILITY = 12 * 3600
#: Attempts for the entries of a batch that SQS failed on its side (not the sender's fault).
PUBLISH_ATTEMPTS = 6
PUBLISH_THREADS = 8

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_AWS_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")
_USAGE = (
    "use sqs://QUEUE_NAME, https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE "
    "or http://HOST:PORT/ACCOUNT/QUEUE"
)

T = TypeVar("T")


def _boto_errors() -> tuple[type[Exception], ...]:
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        error = response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    if type(exc).__name__ == "NoCredentialsError":
        return "no AWS credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
    return f"{type(exc).__name__}: {exc}"


class _Where:
    """Where a queue URL points: a name to resolve, or a queue URL, and the endpoint/region."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise ConfigError(
                f"queue {redact_url(url)!r}: credentials in a queue URL are not accepted; use "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        self.name: str | None = None
        self.queue_url: str | None = None
        self.endpoint_url: str | None = None
        self.region: str | None = None
        if parts.scheme.lower() == "sqs":
            if parts.path.strip("/") or not _NAME.match(parts.netloc):
                raise ConfigError(f"queue {redact_url(url)!r}: not a queue name; {_USAGE}")
            self.name = parts.netloc
            return
        segments = parts.path.strip("/").split("/")
        if (
            not parts.hostname
            or len(segments) != 2
            or not segments[0].isdigit()
            or not _NAME.match(segments[1])
        ):
            raise ConfigError(f"queue {redact_url(url)!r}: not an SQS queue URL; {_USAGE}")
        self.queue_url = f"{parts.scheme.lower()}://{parts.netloc}/{segments[0]}/{segments[1]}"
        aws = _AWS_HOST.match(parts.hostname)
        if aws:
            self.region = aws.group(1) or aws.group(2)
        else:
            self.endpoint_url = f"{parts.scheme.lower()}://{parts.netloc}"


class SqsQueue(WorkQueue):
    """One SQS queue: long-polling receive, visibility changes, batched publishing."""

    def __init__(self, url: str, options: QueueOptions) -> None:
        base, self.options, _ = split_options(url, options)
        where = _Where(base)
        self.name = redact_url(base)
        from botocore.config import Config

        from logferry.aws import session

        config = Config(
            retries={"mode": "standard", "total_max_attempts": 5},
            connect_timeout=10,
            read_timeout=MAX_WAIT + 40,  # a long poll holds the request for up to 20 s
            max_pool_connections=32,
        )
        try:
            self.client = session(self.options.profile, self.options.region or where.region).client(
                "sqs", endpoint_url=self.options.endpoint_url or where.endpoint_url, config=config
            )
        except (*_boto_errors(), ValueError) as exc:  # type: ignore[misc]
            hint = " (set AWS_REGION, or ?region= in the queue URL)" if "region" in str(exc) else ""
            raise ConfigError(
                redact(f"queue {self.name}: cannot create SQS client: {exc}{hint}")
            ) from None
        self.url = where.queue_url or self._resolve(where.name or "")
        attributes = self._setup(
            "GetQueueAttributes",
            lambda: self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["RedrivePolicy", "FifoQueue"]
            ),
        ).get("Attributes", {})
        self.fifo = attributes.get("FifoQueue") == "true" or self.url.endswith(".fifo")
        self.dead_letter_url = self._dead_letter_url(attributes.get("RedrivePolicy"))
        self._warn_if_redrive_is_stricter(attributes.get("RedrivePolicy"))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- opening ----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """The queue URL SQS resolved (its scheme and host in lower case)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"

    def _setup(self, what: str, call: Callable[[], T]) -> T:
        """A call made while opening: any failure is a configuration error (exit 2)."""
        try:
            return call()
        except _boto_errors() as exc:
            if _code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise ConfigError(
                    f"queue {self.name}: does not exist; create it (aws sqs create-queue) or "
                    "check the name, region and endpoint"
                ) from None
            raise ConfigError(redact(f"queue {self.name}: {what}: {_describe(exc)}")) from None

    def _resolve(self, name: str, account: str | None = None) -> str:
        kwargs = {"QueueOwnerAWSAccountId": account} if account else {}
        response = self._setup(
            "GetQueueUrl", lambda: self.client.get_queue_url(QueueName=name, **kwargs)
        )
        return str(response["QueueUrl"])

    def _dead_letter_url(self, redrive: str | None) -> str | None:
        target = self.options.dead_letter
        if target:
            if "://" not in target or target.lower().startswith("sqs://"):
                name = target.split("://", 1)[-1].strip("/")
                if not _NAME.match(name):
                    raise ConfigError(f"queue {self.name}: dead_letter {target!r} is no queue name")
                return self._resolve(name)
            where = _Where(target)
            assert where.queue_url is not None
            return where.queue_url
        if redrive:
            try:
                arn = str(orjson.loads(redrive)["deadLetterTargetArn"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return None
            fields = arn.split(":")  # arn:aws:sqs:REGION:ACCOUNT:NAME
            if len(fields) == 6:
                return self._resolve(fields[5], fields[4])
        return None

    def _warn_if_redrive_is_stricter(self, redrive: str | None) -> None:
        # SQS moves a message on its own after maxReceiveCount receives, whatever the worker
        # decided: a message given back while another runner holds its object (never a
        # dead letter for the worker) or still retrying would leave early.
        try:
            limit = int(orjson.loads(redrive or "{}").get("maxReceiveCount", 0))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return
        if 0 < limit <= self.options.max_deliveries:
            log.warning(
                "queue %s: its RedrivePolicy moves messages to the dead-letter queue after %d "
                "receives, no more than max_deliveries (%d): raise maxReceiveCount well above "
                "it, or retries and objects held by other runners may be dead-lettered early",
                self.name, limit, self.options.max_deliveries,
            )  # fmt: skip

    # -- calls ------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except _boto_errors() as exc:
            raise QueueError(redact(f"queue {self.name}: {what}: {_describe(exc)}")) from None

    def receive(self, max_messages: int, wait: float) -> list[Message]:
        """Long-poll for up to 10 messages (SQS's limit per call)."""
        response = self._call(
            "ReceiveMessage",
            lambda: self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(max_messages, MAX_BATCH)),
                WaitTimeSeconds=min(MAX_WAIT, max(0, math.ceil(wait))),
                VisibilityTimeout=self._seconds(self.options.visibility_timeout),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ),
        )
        return [
            Message(
                id=m["MessageId"],
                body=m.get("Body", "").encode(),
                deliveries=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                handle=m["ReceiptHandle"],
            )
            for m in response.get("Messages", [])
        ]

    @staticmethod
    def _seconds(seconds: float) -> int:
        return min(MAX_VISIBILITY, max(0, math.ceil(seconds)))

    def _visibility(self, message: Message, seconds: float, what: str) -> None:
        self._call(
            what,
            lambda: self.client.change_message_visibility(
                QueueUrl=self.url,
                ReceiptHandle=message.handle,
                VisibilityTimeout=self._seconds(seconds),
            ),
        )

    def extend(self, message: Message, seconds: float) -> None:
        """ChangeMessageVisibility: invisible for ``seconds`` from now."""
        self._visibility(message, seconds, "extend (ChangeMessageVisibility)")

    def nak(self, message: Message, delay: float) -> None:
        """ChangeMessageVisibility to ``delay``: delivered again once it elapses."""
        self._visibility(message, delay, "nak (ChangeMessageVisibility)")

    def ack(self, message: Message) -> None:
        """DeleteMessage."""
        self._call(
            "ack (DeleteMessage)",
            lambda: self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.handle),
        )

    def dead_letter(self, message: Message, reason: str) -> None:
        """Send the body to the dead-letter queue (if there is one) with the reason, then delete."""
        target = self.dead_letter_url
        if target is not None:
            extra: dict[str, Any] = {}
            if target.endswith(".fifo"):
                extra = {"MessageGroupId": "dead-letters", "MessageDeduplicationId": message.id}
            attributes = {
                "reason": {"DataType": "String", "StringValue": redact(reason)[:1000] or "-"},
                "deliveries": {"DataType": "Number", "StringValue": str(message.deliveries)},
                "queue": {"DataType": "String", "StringValue": self.name},
            }
            self._call(
                "dead_letter (SendMessage)",
                lambda: self.client.send_message(
                    QueueUrl=target,
                    MessageBody=message.body.decode("utf-8", "replace"),
                    MessageAttributes=attributes,
                    **extra,
                ),
            )
        self.ack(message)

    # -- publishing -------------------------------------------------------------------------

    def publish(self, bodies: Sequence[bytes], ids: Sequence[str] | None = None) -> None:
        """SendMessageBatch in groups of 10 and 256 KiB, several at once; retry failed entries."""
        if ids is not None and len(ids) != len(bodies):
            raise ValueError("publish: one id per body")
        entries = [self._entry(i, body, ids[i] if ids else None) for i, body in enumerate(bodies)]
        groups = list(_groups(entries))
        if len(groups) <= 1:
            for group in groups:
                self._send(group)
            return
        for future in [self._executor().submit(self._send, group) for group in groups]:
            future.result()  # the first failure raises here

    def _entry(self, index: int, body: bytes, msg_id: str | None) -> dict[str, Any]:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise QueueError(f"queue {self.name}: message {index} is not UTF-8 text") from None
        if len(body) > MAX_BYTES:
            raise QueueError(
                f"queue {self.name}: message {index} has {len(body)} bytes; SQS takes {MAX_BYTES}"
            )
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": text}
        if self.fifo:
            dedupe = msg_id or hashlib.sha256(body).hexdigest()
            entry["MessageDeduplicationId"] = hashlib.sha256(dedupe.encode()).hexdigest()[:64]
            entry["MessageGroupId"] = entry["MessageDeduplicationId"]  # one group each: parallel
        return entry

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="sqs-publish")
            return self._pool

    def _send(self, entries: list[dict[str, Any]]) -> None:
        pending = entries
        for attempt in range(PUBLISH_ATTEMPTS):
            response = self._call(
                "publish (SendMessageBatch)",
                partial(self.client.send_message_batch, QueueUrl=self.url, Entries=pending),
            )
            failed = response.get("Failed", [])
            if not failed:
                return
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                first = refused[0]
                raise QueueError(
                    f"queue {self.name}: publish refused {len(refused)} messages: "
                    f"{first.get('Code')}: {first.get('Message', '')}".rstrip(": ")
                )
            again = {f["Id"] for f in failed}
            pending = [e for e in pending if e["Id"] in again]
            time.sleep(min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0))
        raise QueueError(
            f"queue {self.name}: publish failed for {len(pending)} messages after "
            f"{PUBLISH_ATTEMPTS} attempts"
        )

    def close(self) -> None:
        """Stop the publishing threads and close the HTTP pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()


def _groups(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entries cut into SendMessageBatch calls: at most 10 and 256 KiB each, in order."""
    group: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = len(entry["MessageBody"].encode())
        if group and (len(group) == MAX_BATCH or size + n > MAX_BYTES):
            yield group
            group, size = [], 0
        group.append(entry)
        size += n
    if group:
        yield group


def _check(url: str, options: QueueOptions) -> None:
    base, merged, _ = split_options(url, options)
    _Where(base)
    if (
        merged.dead_letter
        and "://" in merged.dead_letter
        and not merged.dead_letter.startswith("sqs://")
    ):
        _Where(merged.dead_letter)


def _open(url: str, options: QueueOptions, *, publish_only: bool = False) -> SqsQueue:
    return SqsQueue(url, options)  # an SQS queue has no consumer side to make


COMPONENT = Component(
    name="sqs",
    kind="queue",
    schemes=("sqs", "https", "http"),
    options=QueueOptions,
    check=_check,
    open=_open,
    usage="sqs://QUEUE, https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE",
    summary="an Amazon SQS queue (or a moto/LocalStack endpoint's)",
    preload=("logferry.aws", "boto3", "botocore.config"),
)
