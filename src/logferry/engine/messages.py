"""Handling one work-queue message: parse it, ship the objects it names, settle it once.

The ledger decides how a message is settled (see ``queues/base.py``):

- every object done (now, or before: a duplicate delivery is looked up first and not
  shipped again): ``ack``;
- an object failed for a reason that may pass (a sink asking to retry later, a source
  outage, another runner holding it): ``nak`` with a delay that doubles per delivery;
- after ``max_deliveries``, or at once when an object failed for good (undecodable,
  refused by a sink): its object waits in the ledger's error queue (``logferry errors``)
  and the message goes to the dead-letter target;
- a body that is no notification, or names a bucket no source reads: dead-lettered at
  once with a one-line reason, nothing read.

Objects of a lane's ``min_size`` or more are forwarded to that lane's queue instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from logferry.engine.items import ItemsOutcome, ship_work_items
from logferry.engine.results import Progress, one_line
from logferry.errors import ConfigError, ObjectError
from logferry.ledger.base import Ledger, Status
from logferry.notifications import (
    NotificationError,
    WorkItem,
    parse_event,
    s3_event_body,
    s3_event_record,
)
from logferry.queues.base import Message, WorkQueue
from logferry.records import ObjectInfo
from logferry.sources import BucketSource
from logferry.untrusted import visible

if TYPE_CHECKING:
    from logferry.config import ShipOptions
    from logferry.engine.worker import Lane, WorkerStats
    from logferry.pipeline import SourcePlan

log = logging.getLogger("logferry")

#: Why an object was not shipped: a duplicate delivery met it in another thread's hands.
IN_HAND = "being shipped by another thread of this worker"
#: A reason is one line of at most this many characters.
MAX_REASON = 300


def safe_reason(text: str) -> str:
    """One line, bounded, invisible characters escaped: text from a queue is untrusted."""
    text = visible(text)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def forward_body(items: list[WorkItem]) -> bytes:
    """An S3 event notification naming ``items``: what a lane's consumers parse."""
    return s3_event_body([s3_event_record(i.bucket, i.key, i.size, i.etag) for i in items])


#: The longest wait before a message whose object another runner holds is looked at again.
HELD_DELAY_CAP = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    """How a worker ships and retries (from the pipeline file's ``worker:``)."""

    options: ShipOptions
    retry_delay: float = 2.0
    retry_delay_cap: float = 300.0

    def backoff(self, deliveries: int) -> float:
        """The delay before delivery ``deliveries + 1``: doubling, capped."""
        return float(min(self.retry_delay_cap, self.retry_delay * 2 ** max(0, deliveries - 1)))

    def held_backoff(self, deliveries: int) -> float:
        """The delay before asking again about an object another runner holds: short, as
        the holder may finish any moment, and bounded, as it may have died (lease)."""
        return min(self.backoff(deliveries), HELD_DELAY_CAP)


class MessageHandler:
    """Settles each message it is given exactly once; thread-safe."""

    def __init__(
        self,
        ledger: Ledger,
        plan_of: Callable[[str], SourcePlan],
        settings: Settings,
        stats: WorkerStats,
        *,
        owner: str,
        stop: threading.Event,
        progress: Callable[[], Progress] | None = None,
        settling: Callable[[Message], None] = lambda message: None,
    ) -> None:
        self.ledger = ledger
        #: Called before a message is settled (the visibility keeper lets go of it).
        self.settling = settling
        self.plan_of = plan_of
        self.settings = settings
        self.stats = stats
        self.owner = owner
        #: Set at the end of a shutdown's grace: runners stop, messages are given back.
        self.stop = stop
        self.progress = progress
        self._lock = threading.Lock()
        self._in_hand: set[tuple[str, str]] = set()

    def handle(self, lane: Lane, message: Message, forward_to: list[Lane]) -> None:
        """Parse, ship and settle ``message`` of ``lane``; bigger objects go to ``forward_to``."""
        try:
            items = parse_event(message.body)
        except NotificationError as exc:
            self._dead_letter(lane, message, f"not a notification: {exc}")
            return
        objects = [i for i in items if isinstance(i, WorkItem)]
        if len(objects) != len(items):
            self._dead_letter(lane, message, "CloudWatch Logs deliveries name no objects")
            return
        try:
            plans = {b: self.plan_of(b) for b in dict.fromkeys(i.bucket for i in objects)}
        except (ConfigError, ValueError) as exc:
            self._dead_letter(lane, message, str(exc))
            return
        todo = [i for i in objects if not self._done(plans[i.bucket], i)]
        self.stats.add(skipped=len(objects) - len(todo))
        if todo and forward_to:
            try:
                todo = self._forward(lane, todo, plans, forward_to)
            except Exception as exc:  # the lane's queue is unreachable: try again later
                reason = f"forwarding to a lane failed: {one_line(exc)}"
                if message.deliveries < lane.max_deliveries:
                    log.warning("%s; again later", reason)
                    self._nak(lane, message)
                else:  # a lane that keeps refusing (access, size) must not loop for ever
                    self._dead_letter(
                        lane,
                        message,
                        f"still failing after {message.deliveries} deliveries: " + reason,
                    )
                return
        if not todo:
            self._ack(lane, message)
            return
        mine = self._reserve(todo)
        try:
            outcome = ship_work_items(
                mine,
                self.ledger,
                self.plan_of,
                self.settings.options,
                stop=self.stop,
                progress=self.progress() if self.progress else None,
                owner=self.owner,
            )
        finally:
            self._unreserve(mine)
        for item in todo:
            if item not in mine:  # another thread of this process ships it: ask again later
                outcome.errors[(item.bucket, item.key)] = IN_HAND
                outcome.transient.add((item.bucket, item.key))
                outcome.held.add((item.bucket, item.key))
        self._count(outcome)
        self._settle(lane, message, todo, outcome)

    def _reserve(self, items: list[WorkItem]) -> list[WorkItem]:
        """The items no other thread of this process is shipping now, marked as ours.

        The threads share one owner id, under which the ledger would hand a second thread
        the claim the first one holds (a duplicate delivery arriving meanwhile), and the
        two would write the same object to the same sinks at once.
        """
        with self._lock:
            mine = [i for i in items if (i.bucket, i.key) not in self._in_hand]
            self._in_hand.update((i.bucket, i.key) for i in mine)
        return mine

    def _unreserve(self, items: list[WorkItem]) -> None:
        with self._lock:
            self._in_hand.difference_update((i.bucket, i.key) for i in items)

    # -- deciding -----------------------------------------------------------------------

    def _done(self, plan: SourcePlan, item: WorkItem) -> bool:
        """The ledger has this object version done: a duplicate delivery, not shipped again.

        A notification without an eTag (EventBridge's may lack it, COS's) cannot tell which
        version it names: the key may have been written again since. The runner then reads
        the object's current eTag and ships it unless that version is done.
        """
        if item.etag is None:
            return False
        seen = self.ledger.lookup(plan.source.id, [item.key]).get(item.key)
        return seen is not None and seen.status == Status.DONE and seen.etag == item.etag

    def _forward(
        self, lane: Lane, items: list[WorkItem], plans: dict[str, SourcePlan], lanes: list[Lane]
    ) -> list[WorkItem]:
        """Publish items of a lane's size to its queue; return the ones to ship here."""
        ordered = sorted(lanes, key=lambda lane: -lane.min_size)
        here: list[WorkItem] = []
        out: dict[str, list[WorkItem]] = {}
        for item in items:
            size = item.size if item.size is not None else self._size(plans[item.bucket], item)
            to = next((ln for ln in ordered if size is not None and size >= ln.min_size), None)
            if to is None:
                here.append(item)
            else:
                out.setdefault(to.name, []).append(item)
        for to in ordered:
            if to.name in out:
                to.queue.publish([forward_body(out[to.name])])
                self.stats.add(forwarded=len(out[to.name]))
                self.stats.add_message(lane.name, "forwarded")
                log.info("forwarded %d objects to lane %s", len(out[to.name]), to.name)
        return here

    @staticmethod
    def _size(plan: SourcePlan, item: WorkItem) -> int | None:
        """The size the notification left out, by HEAD (None: let the runner report why)."""
        source = plan.source
        if not isinstance(source, BucketSource):  # notified_plan only finds buckets
            return None
        try:
            return source.head(item.key).size
        except ObjectError:
            return None

    def _settle(
        self, lane: Lane, message: Message, items: list[WorkItem], outcome: ItemsOutcome
    ) -> None:
        pending = [i for i in items if not outcome.ok(i)]
        if not pending:
            self._ack(lane, message)
            return
        keys = [(i.bucket, i.key) for i in pending]
        reason = safe_reason(outcome.errors.get(keys[0], "not shipped"))
        if self.stop.is_set():
            self._nak(lane, message, 0.0)  # shutdown: the claims were released
            return
        if all(k in outcome.held for k in keys):
            # Another runner holds the claim: it ships the object or fails it, and its claim
            # expires if it died. Dead-lettering now would strand a live object, so the
            # message comes back after the lease's worth of waiting, however often.
            log.info("message %s: %s; again later", message.id, reason)
            self._nak(lane, message, self.settings.held_backoff(message.deliveries))
            return
        transient = [k for k in keys if k in outcome.transient]
        if transient and message.deliveries < lane.max_deliveries:
            log.info("message %s: %s; again later", message.id, reason)
            self._nak(lane, message)
            return
        if transient:
            reason = f"still failing after {message.deliveries} deliveries: {reason}"
            for item in pending:
                self._fail_in_ledger(item, reason)
        self._dead_letter(lane, message, reason)

    def _fail_in_ledger(self, item: WorkItem, reason: str) -> None:
        """Make sure the object waits in the error queue (``logferry errors``, ``drain``)."""
        plan = self.plan_of(item.bucket)
        seen = self.ledger.lookup(plan.source.id, [item.key]).get(item.key)
        if seen is not None and seen.status in (Status.FAILED, Status.DONE, Status.ACTIVE):
            return  # failed by its runner already, done, or another runner ships it now
        info = ObjectInfo(item.key, item.size or 0, item.etag or "unknown", 0)
        claim = self.ledger.claim(plan.source.id, info, self.owner, 60.0)
        if claim is not None:
            self.ledger.fail(claim, reason, "MaxDeliveries")

    # -- settling -------------------------------------------------------------------------

    def _count(self, outcome: ItemsOutcome) -> None:
        self.stats.add(
            skipped=len(outcome.already),
            objects=sum(r.objects for r in outcome.results),
            lines=sum(r.lines for r in outcome.results),
            bytes=sum(r.bytes for r in outcome.results),
        )

    def _ack(self, lane: Lane, message: Message) -> None:
        self.settling(message)
        lane.queue.ack(message)
        self.stats.add_message(lane.name, "acked")

    def _nak(self, lane: Lane, message: Message, delay: float | None = None) -> None:
        delay = self.settings.backoff(message.deliveries) if delay is None else delay
        self.settling(message)
        lane.queue.nak(message, delay)
        self.stats.add_message(lane.name, "naked")

    def _dead_letter(self, lane: Lane, message: Message, reason: str) -> None:
        reason = safe_reason(reason)
        log.warning("message %s dead-lettered: %s", message.id, reason)
        self.settling(message)
        lane.queue.dead_letter(message, reason)
        self.stats.add_message(lane.name, "dead_lettered")


def settle_quietly(queue: WorkQueue, message: Message, delay: float = 0.0) -> None:
    """Give ``message`` back without waiting (shutdown); a failure only means it comes back
    when its visibility runs out."""
    try:
        queue.nak(message, delay)
    except Exception as exc:
        log.warning("giving message %s back failed: %s", message.id, one_line(exc))
