"""NATS JetStream as a work queue: a durable pull consumer, used from plain threads.

URL: ``nats://[USER:PASS@]HOST[:4222]/STREAM?subject=SUBJECT&durable=NAME`` plus the common
options (``visibility_timeout``, ``max_deliveries``, ``dead_letter``). The stream (work-queue
retention, capturing ``subject``; default: the stream's name) and the durable consumer
(default ``logferry``; ``ack_wait`` = the visibility timeout) are created when missing. An
existing consumer is left as it is: its ``ack_wait`` becomes this queue's visibility timeout
(with a warning when it differs), so one worker cannot change the timing of the others.

nats-py is asyncio; one event loop runs in a daemon thread per queue and the synchronous
methods hand it coroutines, so worker threads use it like any other queue. Each thread pulls
through its own subscription to the shared consumer, so concurrent fetches never mix replies.

The consumer redelivers without limit: the worker counts ``deliveries`` and dead-letters a
message itself (to ``dead_letter``, a subject, then ``term``), so no message is ever left
unacked in a work-queue stream because the server gave up on it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from logferry.errors import ConfigError
from logferry.extras import require
from logferry.queues.base import Message, QueueError, QueueOptions, WorkQueue
from logferry.queues.options import split_options
from logferry.redact import redact, redact_url
from logferry.registry import Component

if TYPE_CHECKING:
    # asyncio is imported where it is used: the registry imports this module for every
    # command, and a plain ``ship`` should not pay for the event loop machinery.
    import asyncio

__all__ = ["NatsQueue"]

log = logging.getLogger("logferry")

#: A name JetStream accepts for a stream or a durable consumer.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUBJECT = re.compile(r"^[^\s*>]+$")
#: Seconds any one call may take before it is reported as failed (a fetch adds its wait).
CALL_TIMEOUT = 15.0
#: Messages published at once before waiting for their acknowledgements.
PUBLISH_WINDOW = 1000
_USAGE = "use nats://HOST:4222/STREAM?subject=SUBJECT&durable=NAME"

T = TypeVar("T")


class _Where:
    """The parts of a ``nats://`` queue URL."""

    def __init__(self, url: str, own: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.stream = parts.path.strip("/")
        if not parts.hostname or not self.stream:
            raise ConfigError(f"queue {redact_url(url)!r}: no stream name; {_USAGE}")
        if not _NAME.match(self.stream):
            raise ConfigError(
                f"queue {redact_url(url)!r}: the stream name may hold only letters, digits, "
                f"'_' and '-' (64 at most); {_USAGE}"
            )
        try:
            port = parts.port or 4222
        except ValueError:
            raise ConfigError(f"queue {redact_url(url)!r}: bad port; {_USAGE}") from None
        # nats-py reads USER:PASS@ (or TOKEN@) from the server URL itself.
        userinfo = parts.netloc.rpartition("@")[0]
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.server = f"nats://{userinfo + '@' if userinfo else ''}{host}:{port}"
        self.subject = own.get("subject") or self.stream
        self.durable = own.get("durable") or "logferry"
        if not _SUBJECT.match(self.subject):
            raise ConfigError(f"queue {redact_url(url)!r}: subject must name one subject")
        if not _NAME.match(self.durable):
            raise ConfigError(f"queue {redact_url(url)!r}: durable must be a plain name")


class _Loop:
    """An asyncio loop in a daemon thread, and a way to run coroutines on it from others."""

    def __init__(self, name: str) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        import asyncio

        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class _Deliveries:
    """Delivery counts, mended where the server under-reports them.

    nats-server 2.9 sometimes reports ``num_delivered`` 1 for the redelivery of a message
    nak'ed with a delay (its consumer sequence has moved on, the count has not). Counts this
    process saw are remembered (bounded, on the loop thread only), and a redelivery is never
    counted lower than the delivery before it plus one.
    """

    LIMIT = 65_536

    def __init__(self) -> None:
        self.seen: OrderedDict[tuple[str, int], tuple[int, int]] = OrderedDict()

    def count(self, metadata: Any) -> int:
        key = (metadata.stream, metadata.sequence.stream)
        consumer_seq, delivered = metadata.sequence.consumer, int(metadata.num_delivered)
        before = self.seen.pop(key, None)
        if before is not None and consumer_seq > before[0]:
            delivered = max(delivered, before[1] + 1)
        self.seen[key] = (consumer_seq, delivered)
        if len(self.seen) > self.LIMIT:
            self.seen.popitem(last=False)
        return delivered


class NatsQueue(WorkQueue):
    """A JetStream stream and durable pull consumer behind the synchronous queue contract."""

    def __init__(self, url: str, options: QueueOptions, *, publish_only: bool = False) -> None:
        base, self.options, own = split_options(url, options, ("subject", "durable"))
        self._publish_only = publish_only
        self.where = _Where(base, own)
        self.name = redact_url(url)
        (nats,) = require("queue", "nats")
        self._nats = nats
        self._loop = _Loop(f"nats-{self.where.stream}")
        self._local = threading.local()
        self._subscriptions: list[Any] = []
        self._keepers: dict[int, asyncio.Task[None]] = {}  # touched on the loop only
        self._deliveries = _Deliveries()
        self.nc: Any = None
        try:
            self._loop.run(self._connect(), CALL_TIMEOUT + 5)
        except ConfigError:
            self._abandon()
            raise
        except Exception as exc:
            self._abandon()
            raise ConfigError(
                redact(f"queue {self.name}: cannot connect or set up JetStream: {_text(exc)}")
            ) from None

    # -- setting up -------------------------------------------------------------------------

    async def _connect(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
        from nats.js.errors import NotFoundError

        self.nc = await self._first_connection()
        self.js = self.nc.jetstream(timeout=CALL_TIMEOUT)
        w = self.where
        try:
            await self.js.stream_info(w.stream)
        except NotFoundError:
            await self.js.add_stream(
                StreamConfig(
                    name=w.stream, subjects=[w.subject], retention=RetentionPolicy.WORK_QUEUE
                )
            )
        if self._publish_only:
            return  # the workers make the consumer, with their own visibility timeout
        try:
            info = await self.js.consumer_info(w.stream, w.durable)
        except NotFoundError:
            await self.js.add_consumer(
                w.stream,
                ConsumerConfig(
                    durable_name=w.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.options.visibility_timeout,
                    max_deliver=-1,
                    filter_subject=w.subject,
                ),
            )
        else:
            self._adopt_ack_wait(info.config.ack_wait)
        dead = self.options.dead_letter
        if dead:
            if not _SUBJECT.match(dead):
                raise ConfigError(f"queue {self.name}: dead_letter must be one NATS subject")
            try:
                await self.js.find_stream_name_by_subject(dead)
            except NotFoundError:
                await self.js.add_stream(
                    StreamConfig(name=f"{w.stream}_DEAD_LETTERS", subjects=[dead])
                )

    @property
    def identity(self) -> str:
        """Server, stream and subject, without credentials: two consumers of one subject
        would take each other's messages, whatever their durable names."""
        host = self.where.server.rpartition("@")[2].lower()
        return f"{host}/{self.where.stream}/{self.where.subject}"

    def _adopt_ack_wait(self, ack_wait: float | None) -> None:
        """Use an existing consumer's ``ack_wait`` as the visibility timeout.

        Updating the consumer instead would change the redelivery timing of every worker
        already reading it; their keepers renew at their own timeout's pace.
        """
        wanted = self.options.visibility_timeout
        if not ack_wait or abs(ack_wait - wanted) < 0.001:
            return
        log.warning(
            "queue %s: consumer %r has ack_wait %g s, not the requested visibility timeout "
            "%g s; using %g s (delete the consumer to change it)",
            self.name, self.where.durable, ack_wait, wanted, ack_wait,
        )  # fmt: skip
        self.options = self.options.model_copy(update={"visibility_timeout": ack_wait})

    def _abandon(self) -> None:
        """After a failed setup: close the connection, if any, and stop the loop."""
        if self.nc is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self.nc.close(), CALL_TIMEOUT)
        self._loop.stop()

    async def _first_connection(self) -> Any:
        """Connect, reconnecting forever later on, but failing at once if the first try fails.

        nats-py retries a first connection as often as later ones; its error callback tells
        of the first failure, which ends the attempt.
        """
        import asyncio

        first_error: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def on_error(exc: Exception) -> None:  # later failures surface through calls
            if not first_error.done():
                first_error.set_result(exc)

        connecting = asyncio.ensure_future(
            self._nats.connect(
                servers=[self.where.server],
                name="logferry",
                connect_timeout=5,
                max_reconnect_attempts=-1,
                error_cb=on_error,
            )
        )
        done, _ = await asyncio.wait(
            {connecting, first_error}, timeout=CALL_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if connecting in done:
            first_error.cancel()
            return connecting.result()
        connecting.cancel()
        raise first_error.result() if first_error.done() else TimeoutError("no answer")

    # -- calls ------------------------------------------------------------------------------

    def _run(self, what: str, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        try:
            return self._loop.run(coro, timeout)
        except QueueError:
            raise
        except Exception as exc:
            raise QueueError(redact(f"queue {self.name}: {what}: {_text(exc)}")) from None

    def receive(self, max_messages: int, wait: float) -> list[Message]:
        """Fetch up to ``max_messages`` through this thread's subscription."""
        wait = max(wait, 0.05)
        subscription = self._subscription()
        fetch = self._fetch(subscription, max(1, max_messages), wait)
        return self._run("receive", fetch, CALL_TIMEOUT + wait)

    def _subscription(self) -> Any:
        """The calling thread's pull subscription, made on its first receive.

        Looked up here, in the caller's thread: the coroutines all run on the loop's thread,
        where a thread-local would be one and the same for every worker.
        """
        subscription = getattr(self._local, "subscription", None)
        if subscription is None:
            subscription = self._run("subscribe", self._subscribe())
            self._local.subscription = subscription
        return subscription

    async def _subscribe(self) -> Any:
        subscription = await self.js.pull_subscribe_bind(
            durable=self.where.durable, stream=self.where.stream
        )
        self._subscriptions.append(subscription)
        return subscription

    async def _fetch(self, subscription: Any, batch: int, wait: float) -> list[Message]:
        try:
            found = await subscription.fetch(batch, timeout=wait)
        except TimeoutError:  # nats.errors.TimeoutError is one: nothing came in time
            return []
        return [
            Message(
                id=f"{m.metadata.stream}:{m.metadata.sequence.stream}",
                body=m.data,
                deliveries=self._deliveries.count(m.metadata),
                handle=m,
            )
            for m in found
        ]

    def extend(self, message: Message, seconds: float) -> None:
        """Mark in progress now, and again as often as needed until ``seconds`` have passed."""
        self._run("extend", self._extend(message.handle, seconds))

    async def _extend(self, msg: Any, seconds: float) -> None:
        import asyncio

        self._forget(msg)
        await msg.in_progress()
        if seconds > self.options.visibility_timeout:
            until = time.monotonic() + seconds
            self._keepers[id(msg)] = asyncio.get_running_loop().create_task(self._keep(msg, until))

    async def _keep(self, msg: Any, until: float) -> None:
        """Renew ``msg``'s ack wait before it runs out, until ``until`` is covered."""
        import asyncio

        ack_wait = self.options.visibility_timeout
        while (remaining := until - time.monotonic()) > ack_wait:
            await asyncio.sleep(min(ack_wait / 2, remaining - ack_wait))
            try:
                await msg.in_progress()
            except Exception:  # disconnected: the message comes back, as a crash would
                return

    def _forget(self, msg: Any) -> None:
        keeper = self._keepers.pop(id(msg), None)
        if keeper is not None:
            keeper.cancel()

    async def _settle(self, msg: Any, how: str, delay: float = 0) -> None:
        self._forget(msg)
        if how == "ack":
            await msg.ack_sync(timeout=CALL_TIMEOUT)
        elif how == "nak":
            await msg.nak(delay=delay or None)
            await self.nc.flush(timeout=CALL_TIMEOUT)
        else:
            await msg.term()
            await self.nc.flush(timeout=CALL_TIMEOUT)

    def ack(self, message: Message) -> None:
        """Acknowledge, and wait for the server to confirm it."""
        self._run("ack", self._settle(message.handle, "ack"))

    def nak(self, message: Message, delay: float) -> None:
        """Negative ack: delivered again after ``delay`` seconds."""
        self._run("nak", self._settle(message.handle, "nak", delay))

    def dead_letter(self, message: Message, reason: str) -> None:
        """Publish the body to the ``dead_letter`` subject (if set), then ``term`` it."""
        self._run("dead_letter", self._dead_letter(message, reason))

    async def _dead_letter(self, message: Message, reason: str) -> None:
        if self.options.dead_letter:
            headers = {
                "Logferry-Reason": " ".join(redact(reason).split())[:1000] or "-",
                "Logferry-Deliveries": str(message.deliveries),
                "Logferry-Queue": self.name,
                "Nats-Msg-Id": f"dead:{message.id}",  # a retry after a lost reply stays one
            }
            await self.js.publish(self.options.dead_letter, message.body, headers=headers)
        await self._settle(message.handle, "term")

    def publish(self, bodies: Sequence[bytes], ids: Sequence[str] | None = None) -> None:
        """Publish asynchronously in windows, with ``Nats-Msg-Id`` for dedupe when given ids."""
        if ids is not None and len(ids) != len(bodies):
            raise ValueError("publish: one id per body")
        timeout = CALL_TIMEOUT + len(bodies) / 100
        self._run("publish", self._publish(bodies, ids), timeout)

    async def _publish(self, bodies: Sequence[bytes], ids: Sequence[str] | None) -> None:
        import asyncio

        for start in range(0, len(bodies), PUBLISH_WINDOW):
            futures = []
            for i in range(start, min(start + PUBLISH_WINDOW, len(bodies))):
                headers = {"Nats-Msg-Id": ids[i]} if ids else None
                futures.append(
                    await self.js.publish_async(self.where.subject, bodies[i], headers=headers)
                )
            await asyncio.wait_for(asyncio.gather(*futures), CALL_TIMEOUT)

    def close(self) -> None:
        """Stop keepers, close the connection and the loop."""
        # Closing a broken connection must not hide the failure that led here.
        with contextlib.suppress(Exception):
            self._loop.run(self._close(), CALL_TIMEOUT)
        self._loop.stop()

    async def _close(self) -> None:
        for keeper in self._keepers.values():
            keeper.cancel()
        self._keepers.clear()
        await self.nc.close()


def _text(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text and not text.startswith("nats: ") else (text or name)


def _check(url: str, options: QueueOptions) -> None:
    base, _merged, own = split_options(url, options, ("subject", "durable"))
    _Where(base, own)


def _open(url: str, options: QueueOptions, *, publish_only: bool = False) -> NatsQueue:
    return NatsQueue(url, options, publish_only=publish_only)


COMPONENT = Component(
    name="nats",
    kind="queue",
    schemes=("nats",),
    options=QueueOptions,
    check=_check,
    open=_open,
    usage="nats://HOST:4222/STREAM?subject=SUBJECT&durable=NAME",
    summary="a NATS JetStream stream read by a durable pull consumer",
    preload=("nats", "nats.js.api"),
)
