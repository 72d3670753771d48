"""What the dashboard reads from the ledger: per-source progress, throughput, the error queue.

The ledger is opened read-only for reading (a ledger on a read-only filesystem can be
shown); actions open it writable only while they run. Throughput is sampled on the server:
every few seconds the per-source line and byte counts go into a ring buffer in memory.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from logferry.errors import LogferryError
from logferry.ledger import Ledger, Status, open_ledger
from logferry.ledger.base import Entry
from logferry.ledger.dead_letters import DeadLetter
from logferry.sources import is_stream_url


class LedgerUnavailableError(LogferryError):
    """The ledger could not be opened or read."""


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One source on the overview."""

    source: str
    done: int
    failed: int
    in_progress: int
    dead_letters: int
    lines: int
    bytes: int
    last_shipped: float | None
    #: Age in seconds of the oldest object not shipped yet (pending or being shipped);
    #: 0 when none waits. Stream partitions are always open, so they do not count.
    oldest_pending_age: float
    #: A stream source (files followed, CloudWatch): its partitions stay open as they grow.
    stream: bool = False

    @property
    def progress_percent(self) -> float:
        """Objects and partitions done out of all the ledger knows of this source."""
        total = self.done + self.failed + self.in_progress
        return 100.0 if total == 0 else self.done / total * 100


@dataclass(frozen=True, slots=True)
class QueueItem:
    """An entry of the error queue: a failed object (``12``) or a dead letter (``D3``)."""

    id: str
    kind: str  # "object" or "dead_letter"
    source: str
    key: str
    error_class: str
    error: str
    when: float
    #: Everything else the ledger knows, as label → text, for the details page.
    details: tuple[tuple[str, str], ...]


def utc(ts: float | None) -> str:
    """A UNIX time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or "-"."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _object_item(e: Entry) -> QueueItem:
    details = (
        ("status", str(e.status)),
        ("etag", e.etag),
        ("size", f"{e.size:,} bytes"),
        ("position", f"{e.position:,} records acknowledged"),
        ("attempts", str(e.attempts)),
        ("first seen", utc(e.first_seen)),
        ("last attempt", utc(e.updated)),
    )
    return QueueItem(
        str(e.id),
        "object",
        e.source,
        e.key,
        e.error_class or "error",
        e.last_error or "",
        e.updated,
        details,
    )


def _letter_item(d: DeadLetter) -> QueueItem:
    details = (
        ("records", f"{d.start:,} to {d.end:,} ({d.end - d.start:,} records)"),
        ("delivered as", d.range_key),
        ("etag", d.etag),
        ("refused by", d.sink),
        ("size", f"{d.nbytes:,} bytes"),
        ("filed", utc(d.created)),
    )
    return QueueItem(
        d.label, "dead_letter", d.source, d.key, d.error_class, d.error, d.created, details
    )


class LedgerView:
    """Read access to one ledger, opened read-only on first use and again after a failure."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._reader: Ledger | None = None
        self._lock = threading.Lock()

    def _ledger(self) -> Ledger:
        with self._lock:
            if self._reader is None:
                try:
                    self._reader = open_ledger(self.url, create=False, readonly=True)
                except LogferryError as exc:
                    raise LedgerUnavailableError(str(exc)) from None
            return self._reader

    @property
    def display(self) -> str:
        """The ledger's URL without a password, once opened; else what was asked for."""
        reader = self._reader
        return reader.display if reader is not None else (self.url or "the default ledger")

    def _reset(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Ledger]:
        """The read-only ledger; a failure to read is a :class:`LedgerUnavailableError`."""
        led = self._ledger()
        try:
            yield led
        except LogferryError as exc:
            self._reset()  # a ledger replaced or moved is opened afresh next time
            raise LedgerUnavailableError(str(exc)) from None

    @contextlib.contextmanager
    def writing(self) -> Iterator[Ledger]:
        """The ledger opened writable for one action, closed after it."""
        try:
            led = open_ledger(self.url, create=False)
        except LogferryError as exc:
            raise LedgerUnavailableError(str(exc)) from None
        try:
            yield led
        finally:
            led.close()

    def close(self) -> None:
        """Close the read-only connection."""
        self._reset()

    def sources(self) -> list[SourceRow]:
        """Every source of the ledger with its progress, lag and failures."""
        now = time.time()
        with self.reading() as led:
            statuses = led.status()
            letters: dict[str, int] = {}
            for d in led.dead_letters():
                letters[d.source] = letters.get(d.source, 0) + 1
            oldest: dict[str, float] = {}
            for status in (Status.PENDING, Status.ACTIVE):
                for e in led.entries(status=status):
                    if e.cursor is None:  # an object, not a stream partition
                        oldest[e.source] = min(oldest.get(e.source, now), e.first_seen)
        return [
            SourceRow(
                s.source,
                s.done,
                s.failed,
                s.in_progress,
                letters.get(s.source, 0),
                s.lines,
                s.bytes,
                s.last_shipped,
                max(0.0, now - oldest[s.source]) if s.source in oldest else 0.0,
                is_stream_url(s.source),
            )
            for s in sorted(statuses, key=lambda s: s.source)
        ]

    def queue(self) -> list[QueueItem]:
        """The error queue, newest first: failed objects and dead letters together."""
        with self.reading() as led:
            items = [_object_item(e) for e in led.entries(status=Status.FAILED)]
            items += [_letter_item(d) for d in led.dead_letters()]
        items.sort(key=lambda i: i.when, reverse=True)
        return items

    def item(self, entry_id: str) -> QueueItem | None:
        """One entry of the error queue by its id (``12`` or ``D3``), or None."""
        with self.reading() as led:
            if entry_id[:1] == "D":
                found = led.dead_letters(ids=[int(entry_id[1:])])
                return _letter_item(found[0]) if found else None
            e = led.entry(int(entry_id))
        return _object_item(e) if e is not None and e.status == Status.FAILED else None


class Sampler:
    """Per-source line and byte counts every ``every`` seconds, kept for ``window`` seconds."""

    def __init__(self, view: LedgerView, every: float = 5.0, window: float = 900.0) -> None:
        self.view = view
        self.every = every
        self._samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque(
            maxlen=max(2, int(window / every) + 1)
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now (a ledger that cannot be read adds none)."""
        try:
            with self.view.reading() as led:
                counts = {s.source: (s.lines, s.bytes) for s in led.status()}
        except Exception:  # a busy or missing ledger: no sample this time
            return
        with self._lock:
            self._samples.append((time.time(), counts))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def start(self) -> None:
        """Sample now and then every ``every`` seconds in a daemon thread."""
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="dashboard-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5)

    def rates(self) -> tuple[list[float], dict[str, list[float]]]:
        """(end time of each interval, lines per second of each source in each interval)."""
        with self._lock:
            samples = list(self._samples)
        times: list[float] = []
        series: dict[str, list[float]] = {}
        for n, ((t0, c0), (t1, c1)) in enumerate(itertools.pairwise(samples)):
            times.append(t1)
            span = max(t1 - t0, 1e-6)
            for source, (lines, _bytes) in c1.items():
                # A source absent from the earlier sample shipped all its lines since.
                before = c0.get(source, (0, 0))[0]
                # Counts fall when rows are purged: that is not negative throughput.
                series.setdefault(source, [0.0] * n).append(max(0, lines - before) / span)
            for values in series.values():
                values.extend([0.0] * (n + 1 - len(values)))
        return times, series
