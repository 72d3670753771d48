"""Distributed backfills: list a bucket into a work queue, one message per object.

``logferry enqueue`` lists a bucket in parallel, by prefix, and publishes each object that
is in the time range and not done in the ledger as an S3-event-shaped message, which
``logferry worker`` processes (on as many hosts as there are workers).

- **Bounded memory.** Listers (one per prefix at a time) page through ListObjectsV2 and
  hand chunks of ``batch`` keys to one publisher through a bounded queue.
- **Resumable.** Each prefix has a cursor in the ledger (``logferry_cursors``): the last
  listed key whose chunk is published. It advances only after the publish returned, so
  after a crash at most the chunk in flight per run is published again: JetStream drops
  it (``Nats-Msg-Id``), and so does an SQS FIFO queue; a standard SQS queue delivers it
  twice, and workers ack the duplicates of done objects without shipping them again.
- **One plan per backfill.** The prefixes a run splits the bucket into are stored with the
  cursors, so a resumed run lists exactly the same prefixes, whatever ``--parallel`` says.
"""

from __future__ import annotations

import hashlib
import itertools
import queue as queue_module
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from logferry.errors import ConfigError
from logferry.ledger.base import Ledger, shipped_before
from logferry.notifications import s3_event_body, s3_event_record
from logferry.queues.base import WorkQueue
from logferry.records import ObjectInfo
from logferry.sources.keytime import STAMP_LEAD, in_time_range, key_time_span
from logferry.sources.s3 import S3Source

__all__ = ["EnqueueResult", "Unit", "enqueue", "event_body", "message_id", "plan_units"]

#: How many prefixes splitting aims for (fixed, so a resume finds the same plan anyway).
SPLIT_TARGET = 64
SPLIT_DEPTH = 6
#: A prefix with more children than this is listed whole rather than split further.
SPLIT_MAX_CHILDREN = 10_000
_DONE = "done"
_LEAD_MS = int(STAMP_LEAD.total_seconds() * 1000)


@dataclass(frozen=True, slots=True)
class Unit:
    """A part of the bucket one lister lists: a prefix, whole or only its direct keys."""

    prefix: str
    #: Only the keys right under ``prefix`` (its "folders" are units of their own).
    direct: bool = False

    @property
    def name(self) -> str:
        """The unit's name in cursors and messages."""
        return self.prefix + (" (direct)" if self.direct else "")


@dataclass(slots=True)
class EnqueueResult:
    """What one enqueue run did; the CLI prints it and picks the exit code from it."""

    listed: int = 0
    #: Listed but out of ``--since``/``--until``.
    out_of_range: int = 0
    #: Listed but done in the ledger.
    done: int = 0
    published: int = 0
    prefixes: int = 0
    #: Prefixes whose listing resumed from a cursor (or was complete already).
    resumed: int = 0
    interrupted: bool = False
    error: str | None = None

    @property
    def skipped(self) -> int:
        """Listed and not published: out of the time range or done."""
        return self.out_of_range + self.done

    def as_dict(self) -> dict[str, Any]:
        """The fields, plus ``skipped``, for ``--json``."""
        return {**asdict(self), "skipped": self.skipped}


@dataclass(slots=True)
class _Chunk:
    """Up to ``batch`` listed keys of one unit: those to publish, and where the unit stands."""

    unit: Unit
    items: list[ObjectInfo] = field(default_factory=list)
    last_key: str | None = None
    listed: int = 0
    out_of_range: int = 0
    done: int = 0
    finished: bool = False
    error: BaseException | None = None


def event_body(bucket: str, obj: ObjectInfo) -> bytes:
    """An S3 event notification naming ``obj``, as ``notifications.parse_event`` reads it."""
    record = s3_event_record(
        bucket, obj.key, obj.size, obj.etag,
        event="ObjectCreated:Backfill", time_ms=obj.last_modified_ms,
    )  # fmt: skip
    return s3_event_body([record])


def message_id(bucket: str, obj: ObjectInfo) -> str:
    """The id that lets a queue drop a repeated message: one per object version.

    A hash, because keys are untrusted and may hold what a header must not (line breaks).
    """
    return hashlib.sha256(f"{bucket}/{obj.key}@{obj.etag}".encode()).hexdigest()


def _outside(prefix: str, since: int | None, until: int | None) -> bool:
    """True when no key under ``prefix`` can hold events in ``[since, until)``."""
    span = key_time_span(prefix)
    if span is None:
        return False
    start, end = span[0] - _LEAD_MS, span[1] + _LEAD_MS  # keys below may carry stamps
    return (since is not None and end <= since) or (until is not None and start >= until)


def plan_units(
    source: S3Source,
    prefixes: Sequence[str] = (),
    since: int | None = None,
    until: int | None = None,
) -> list[Unit]:
    """The units to list: the given prefixes (under the source's), or the bucket split at
    ``/`` a few levels deep, leaving out folders whose key time is out of range."""
    if prefixes:
        full = sorted({source.prefix + p for p in prefixes})
        for a, b in itertools.pairwise(full):
            if b.startswith(a):
                raise ConfigError(
                    f"--prefix {a!r} contains {b!r}: give prefixes that do not overlap"
                )
        return [Unit(p) for p in full]
    units: list[Unit] = []
    frontier = [source.prefix]
    for _depth in range(SPLIT_DEPTH):
        deeper: list[str] = []
        for prefix in frontier:
            children = _children(source, prefix)
            if children is None:
                units.append(Unit(prefix))
                continue
            units.append(Unit(prefix, direct=True))
            deeper.extend(c for c in children if not _outside(c, since, until))
        frontier = deeper
        if len(units) + len(frontier) >= SPLIT_TARGET:
            break
    units.extend(Unit(p) for p in frontier)
    return units


def _children(source: S3Source, prefix: str) -> list[str] | None:
    """The folders under ``prefix``; None when it has none or too many to split on."""
    children: list[str] = []
    for child in source.child_prefixes(prefix):
        children.append(child)
        if len(children) > SPLIT_MAX_CHILDREN:
            return None
    return children or None


class _Run:
    """One enqueue run: listers feeding a publisher, cursors advanced after each publish."""

    def __init__(
        self,
        source: S3Source,
        work_queue: WorkQueue,
        ledger: Ledger,
        *,
        since: int | None,
        until: int | None,
        batch: int,
        stop: threading.Event,
    ) -> None:
        self.source, self.queue, self.ledger = source, work_queue, ledger
        self.since, self.until, self.batch, self.stop = since, until, batch, stop
        self.result = EnqueueResult()
        self._pruned = ledger.pruned_before(source.id)

    # -- listing (several threads) ----------------------------------------------------------

    def list_unit(self, unit: Unit, after: str, out: queue_module.Queue[_Chunk]) -> None:
        """List ``unit`` after ``after`` into chunks; a failure is a chunk too."""
        try:
            for page in self.source.list_from(unit.prefix, after, direct=unit.direct):
                if self.stop.is_set():
                    return
                done = self._done_keys(page)
                for start in range(0, len(page), self.batch):
                    self._put(out, self._chunk(unit, page[start : start + self.batch], done))
            self._put(out, _Chunk(unit, finished=True))
        except BaseException as exc:  # the publisher reports it and stops the run
            self._put(out, _Chunk(unit, error=exc, finished=True))

    def _done_keys(self, page: list[ObjectInfo]) -> set[str]:
        seen = self.ledger.lookup(self.source.id, [o.key for o in page])
        return {o.key for o in page if shipped_before(seen.get(o.key), o, self._pruned)}

    def _chunk(self, unit: Unit, listed: list[ObjectInfo], done: set[str]) -> _Chunk:
        chunk = _Chunk(unit, last_key=listed[-1].key, listed=len(listed))
        for obj in listed:
            if not in_time_range(obj.key, obj.last_modified_ms, self.since, self.until):
                chunk.out_of_range += 1
            elif obj.key in done:
                chunk.done += 1
            else:
                chunk.items.append(obj)
        return chunk

    def _put(self, out: queue_module.Queue[_Chunk], chunk: _Chunk) -> None:
        while not self.stop.is_set():
            try:
                out.put(chunk, timeout=0.2)
                return
            except queue_module.Full:
                continue

    # -- publishing (the calling thread) ----------------------------------------------------

    def publish(self, chunk: _Chunk, cursor_name: str) -> None:
        """Publish the chunk's objects, then move the unit's cursor past its keys."""
        if chunk.items:
            bucket = self.source.bucket
            self.queue.publish(
                [event_body(bucket, o) for o in chunk.items],
                ids=[message_id(bucket, o) for o in chunk.items],
            )
        if chunk.finished:
            self.ledger.set_cursor(cursor_name, _DONE)
        elif chunk.last_key is not None:
            self.ledger.set_cursor(cursor_name, "k:" + chunk.last_key)
        r = self.result
        r.listed += chunk.listed
        r.out_of_range += chunk.out_of_range
        r.done += chunk.done
        r.published += len(chunk.items)


def _run_id(work_queue: WorkQueue, source: S3Source, spec: Sequence[Any]) -> str:
    digest = hashlib.sha256(orjson.dumps([work_queue.name, source.id, *spec])).hexdigest()[:16]
    return f"enqueue:{digest}:"


def _load_plan(ledger: Ledger, run: str, make: Callable[[], list[Unit]]) -> list[Unit]:
    stored = ledger.get_cursor(run + "plan")
    if stored is not None:
        return [Unit(p, bool(d)) for p, d in orjson.loads(stored)]
    units = make()
    ledger.set_cursor(run + "plan", orjson.dumps([[u.prefix, u.direct] for u in units]).decode())
    return units


def enqueue(
    source: S3Source,
    work_queue: WorkQueue,
    ledger: Ledger,
    *,
    prefixes: Sequence[str] = (),
    since: int | None = None,
    until: int | None = None,
    parallel: int = 4,
    batch: int = 100,
    restart: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[EnqueueResult], None] | None = None,
) -> EnqueueResult:
    """Publish a message for every object of ``source`` in range and not done; resumable.

    The same arguments resume an interrupted run (``restart`` forgets its cursors first).
    """
    stop = stop or threading.Event()
    run = _run_id(work_queue, source, [source.prefix, sorted(prefixes), since, until])
    if restart:
        ledger.delete_cursors(run)
    units = _load_plan(ledger, run, lambda: plan_units(source, prefixes, since, until))
    state = _Run(source, work_queue, ledger, since=since, until=until, batch=batch, stop=stop)
    state.result.prefixes = len(units)
    pending: list[tuple[Unit, str]] = []
    for unit in units:
        cursor = ledger.get_cursor(run + unit.name)
        if cursor is not None:
            state.result.resumed += 1
        if cursor != _DONE:
            pending.append((unit, (cursor or "").removeprefix("k:")))
    _drive(state, run, pending, max(1, parallel), progress)
    return state.result


def _drive(
    state: _Run,
    run: str,
    pending: list[tuple[Unit, str]],
    parallel: int,
    progress: Callable[[EnqueueResult], None] | None,
) -> None:
    """Run the listers and publish what they hand over, until all are done or it stops."""
    out: queue_module.Queue[_Chunk] = queue_module.Queue(maxsize=parallel * 2)
    open_units = len(pending)
    with ThreadPoolExecutor(parallel, thread_name_prefix="enqueue-list") as listers:
        for unit, after in pending:
            listers.submit(state.list_unit, unit, after, out)
        try:
            while open_units > 0 and not state.stop.is_set():
                try:
                    chunk = out.get(timeout=0.2)
                except queue_module.Empty:
                    continue
                if chunk.error is not None:
                    raise chunk.error
                state.publish(chunk, run + chunk.unit.name)
                open_units -= chunk.finished
                if progress is not None:
                    progress(state.result)
        except ConfigError:
            state.stop.set()
            raise
        except Exception as exc:
            state.result.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            state.stop.set()
        state.result.interrupted = state.stop.is_set() and state.result.error is None
        state.stop.set()  # listers blocked on a full queue give up
