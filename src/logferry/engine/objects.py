"""The object runner: ships whole objects of a bucket, resumably, to the sinks of their route.

Per object, decoding runs in a producer thread a couple of batches ahead of the sinks, so
reading, decompressing and parsing overlap with encoding and sending (zlib and sockets
release the GIL). Several objects are shipped at once by ``workers`` threads, which matters
for buckets of many small objects. The ledger advances only after every sink acknowledged a
batch (invariant 1); what a sink refuses fails the object, which waits in the error queue.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from logferry.codecs import decode_object
from logferry.codecs.formats.base import DecodeContext, FormatOptions
from logferry.config import ShipOptions
from logferry.engine.batching import Stopped, batches, prefetch
from logferry.engine.delivery import Deliverer, Refused, RetryLater, RetryPolicy
from logferry.engine.errorqueue import ErrorQueue
from logferry.engine.leases import LeaseKeeper
from logferry.engine.metrics import METRICS
from logferry.engine.processes import Share, shard_of
from logferry.engine.results import Failure, Progress, ShipResult, close_result, one_line
from logferry.engine.routing import Route, Router
from logferry.errors import DecodeError, LogferryError, ObjectError, is_transient
from logferry.ledger.base import (
    Claim,
    ClaimLostError,
    Ledger,
    Status,
    new_owner_id,
    shipped_before,
)
from logferry.ledger.sql import CRASHED
from logferry.records import Batch, ObjectInfo
from logferry.sinks.base import Sink
from logferry.sources.base import BucketSource
from logferry.sources.keytime import in_time_range

log = logging.getLogger("logferry")


class NotDelivered(LogferryError):
    """A batch ended with an outcome other than delivered; the object stops there."""

    def __init__(self, outcome: Refused | RetryLater) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def format_options_of(options: ShipOptions) -> FormatOptions:
    """The decoding options a run's options imply."""
    return FormatOptions(
        expand=options.expand,
        timestamp_fields=options.timestamp_fields,
        max_document_bytes=options.max_document_bytes,
        max_line_bytes=options.max_record_bytes,
        max_decompressed_bytes=options.max_decompressed_bytes,
        max_decompression_ratio=options.max_decompression_ratio,
        max_zstd_window=options.max_zstd_window,
        syslog_timezone=options.syslog_timezone,
    )


def retry_policy_of(options: ShipOptions) -> RetryPolicy:
    """Followed runs retry a failing sink forever; one-off runs give up after a while."""
    if options.follow:
        return RetryPolicy(give_up_after=None, base=options.retry_backoff, cap=60.0)
    return RetryPolicy(give_up_after=options.retry_timeout, base=options.retry_backoff)


def pending_objects(
    source: BucketSource,
    ledger: Ledger,
    options: ShipOptions,
    *,
    include_done: bool = False,
    share: Share | None = None,
) -> tuple[list[ObjectInfo], int]:
    """Objects to ship, oldest first (LastModified, then key), and how many are held.

    Not done, and not failed ``max_attempts`` times (those are held: they wait in the error
    queue for ``drain``); everything with ``include_done``. Listing is paged; only the
    objects to ship are kept. Held objects are counted in ``share`` only, so that copies
    of one command add up to the bucket's count.
    """
    todo: list[ObjectInfo] = []
    held = listed = 0
    shard, shards = options.shard_index, options.shard_count
    since, until = options.since, options.until
    pruned = None if include_done else ledger.pruned_before(source.id)
    for page in source.list_pages():
        listed += len(page)
        if shards > 1:
            page = [o for o in page if shard_of(o.key, shards) == shard]
        if since is not None or until is not None:
            page = [o for o in page if in_time_range(o.key, o.last_modified_ms, since, until)]
        if include_done:
            todo.extend(page)
            continue
        known = ledger.lookup(source.id, (o.key for o in page))
        for obj in page:
            seen = known.get(obj.key)
            if seen is None and shipped_before(seen, obj, pruned):
                continue  # shipped, then pruned from the ledger (`logferry ledger prune`)
            if seen is None or seen.etag != obj.etag:
                todo.append(obj)
            elif seen.status == Status.FAILED:
                if seen.attempts < options.max_attempts:
                    todo.append(obj)
                elif share is None or share.owns(obj.key):
                    held += 1
            elif seen.status != Status.DONE:
                todo.append(obj)
    todo.sort(key=lambda o: (o.last_modified_ms, o.key))
    log.info("listed %s: %d objects, %d to ship, %d held", source.display, listed, len(todo), held)
    return todo, held


def left_to_sibling(
    ledger: Ledger, source: str, obj: ObjectInfo, moment: float, *, own: bool
) -> bool:
    """True when another copy of this command has ``obj``: its row changed at or after
    ``moment`` (epoch s, this pass's start), or, for an object of another copy's share
    (``own`` False), it failed. The copies' passes do not start at the same instant, so a
    failure before ``moment`` may be the owner's in this very pass: retrying it here too
    would spend two of its ``max_attempts`` in one run and report it twice. A failed object
    is retried by its owner."""
    entry = ledger.get(source, obj.key, obj.etag)
    if entry is None:
        return False
    return entry.updated >= moment or (not own and entry.status == Status.FAILED)


class ObjectRunner:
    """Ships objects of one source to the sinks of their route per ``options.mode``."""

    def __init__(
        self,
        source: BucketSource,
        router: Router,
        ledger: Ledger,
        options: ShipOptions | None = None,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        owner: str | None = None,
    ) -> None:
        self.options = options or ShipOptions()
        self.router = router
        self.source = source
        self.sinks = router.sinks()
        self.ledger = ledger
        self.progress = progress or Progress()
        self.stop = stop or threading.Event()
        #: Whose claims these are; a process running many runners (a worker) passes one id.
        self.owner = owner or new_owner_id()
        #: Copies of this command on this machine (``--processes``) divide what they list;
        #: keys given to ship (a notification, a queue message) are not divided again.
        self.share = Share.from_env() if self.options.mode != "key" else Share()
        self._pass_began = 0.0
        self.result = ShipResult(source.display)
        self.format_options = format_options_of(self.options)
        self.deliverer = Deliverer(retry_policy_of(self.options), self.stop)
        self.errors = ErrorQueue(ledger, self.result, self._announce)
        self.leases = LeaseKeeper(ledger, self.options.lease_seconds, self._claim_lost)
        self._lock = threading.Lock()
        self._counters: collections.Counter[str] = collections.Counter()
        #: Objects whose claim another runner took over: their workers stop at once.
        self._lost: set[tuple[str, str]] = set()
        self._transient: set[tuple[str, str]] = set()
        #: Keys whose last failure may pass on a later attempt (a sink that kept asking to
        #: retry later, a source outage): a worker gives their message back to the queue.
        self.transient: set[str] = set()
        #: Keys named to the runner (``--key``, notifications) it found shipped already.
        self.already_shipped: set[str] = set()

    def pending(self, *, include_done: bool = False) -> list[ObjectInfo]:
        """Objects to ship, oldest first; see :func:`pending_objects`."""
        todo, self.result.held = pending_objects(
            self.source, self.ledger, self.options, include_done=include_done, share=self.share
        )
        oldest = min((o.last_modified_ms for o in todo), default=None)
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        METRICS.oldest_unshipped.labels(self.source.id).set(age)
        return todo

    # -- running ------------------------------------------------------------

    def run(self) -> ShipResult:
        """Run the selected mode to the end (or until ``stop`` is set)."""
        began = time.monotonic()
        self.leases.start()
        try:
            mode = self.options.mode
            if mode == "key":
                self._ship_keys(self.options.keys)
            elif mode == "latest":
                assert self.options.latest is not None
                self._ship_pass(self.pending()[-self.options.latest :])
            elif mode == "all":
                self.progress.message("--all: re-sending every object, whatever the ledger says")
                self._ship_pass(self.pending(include_done=True), force=True)
            else:
                self._catchup()
        finally:
            self.leases.stop()
            self.result.interrupted = self.stop.is_set()
            self.result.seconds = time.monotonic() - began
            retries = {"retries": self.deliverer.retries}
            close_result(self.result, self.sinks, [self._counters, retries])
            self.progress.close()
        return self.result

    def _catchup(self) -> None:
        # List again after each pass: objects keep arriving during long catch-ups. An object
        # whose source read failed for a transient reason is tried again in a later pass,
        # after a growing delay; a sink's failures were retried by the deliverer already.
        settled: set[tuple[str, str]] = set()
        delay = self.options.retry_delay
        while not self.stop.is_set():
            todo = [o for o in self.pending() if (o.key, o.etag) not in settled]
            if not todo:
                return
            if any((o.key, o.etag) in self._transient for o in todo):
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 60.0)
            self._transient.clear()
            self._ship_pass(todo)
            settled.update((o.key, o.etag) for o in todo if (o.key, o.etag) not in self._transient)

    def _ship_keys(self, keys: tuple[str, ...]) -> None:
        todo: list[ObjectInfo] = []
        pruned = self.ledger.pruned_before(self.source.id)
        for key in keys:
            try:
                obj = self.source.head(key)
            except ObjectError as exc:
                if is_transient(exc):
                    with self._lock:
                        self.transient.add(key)
                self.errors.failed(None, key, one_line(exc), type(exc).__name__)
                continue
            entry = self.ledger.get(self.source.id, obj.key, obj.etag)
            if not self.options.force and shipped_before(entry, obj, pruned):
                said = "ledger says done" if entry is not None else "pruned from the ledger"
                self.progress.message(f"{key}: already shipped ({said}); skipped")
                self.result.skipped += 1
                self.already_shipped.add(key)
                continue
            todo.append(obj)
        self._ship_pass(todo, force=self.options.force)

    def _ship_pass(self, objects: list[ObjectInfo], force: bool = False) -> None:
        # Copies of one command: its own share first, then the others' from their end.
        # A forced pass re-sends what is done, which a claim does not stop: own share only.
        objects = self.share.order(objects, steal=not force)
        mine = [o for o in objects if self.share.owns(o.key)]
        self.progress.start_pass(len(mine), sum(o.size for o in mine))
        self._pass_began = time.time()
        items = iter(objects)
        lock = threading.Lock()

        def work() -> None:
            while not self.stop.is_set():
                with lock:
                    obj = next(items, None)
                if obj is None:
                    return
                try:
                    self._ship_object(obj, force)
                except Exception as exc:
                    # The ledger itself failed (locked, unreachable): this object is not
                    # shipped, and it must say so rather than vanish with a dead thread.
                    with self._lock:
                        self.transient.add(obj.key)
                    self.errors.failed(None, obj.key, f"ledger: {one_line(exc)}", "LedgerError")

        n = min(self.options.workers, len(objects))
        if n <= 1:
            work()
            return
        threads = [threading.Thread(target=work, name=f"logferry-worker-{i}") for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _announce(self, key: str, error: str) -> None:
        self.progress.object_finished(ObjectInfo(key, 0, "", 0), error)

    def _claim_lost(self, claim: Claim) -> None:
        with self._lock:
            self._lost.add((claim.key, claim.etag))
        self.progress.message(f"{claim.key}: claim lost to another runner; stopping it here")

    def _ship_object(self, obj: ObjectInfo, force: bool) -> None:
        if self.share.shared and left_to_sibling(
            self.ledger, self.source.id, obj, self._pass_began, own=self.share.owns(obj.key)
        ):
            return  # another copy shipped it, ships it, or failed it: its own
        route = self.router.route(obj.key)
        claim = self.ledger.claim(
            self.source.id,
            obj,
            self.owner,
            self.options.lease_seconds,
            force=force,
            max_attempts=self.options.max_attempts,
        )
        if claim is None:
            self._not_claimed(obj)
            return
        log.info("claimed %s (%d bytes, from record %d)", obj.key, obj.size, claim.position)
        self.leases.hold(claim)
        self.progress.object_started(obj)
        opened: list[Sink] = []
        counters: collections.Counter[str] = collections.Counter()
        shipped = [0, 0]  # lines, bytes acknowledged by every sink in this attempt
        try:
            if route is None:
                raise ObjectError(self.router.no_route())
            if route.drop:
                counters["dropped"] += 1
            else:
                self._ship_formats(obj, claim, route, opened, counters, shipped)
            for sink in opened:
                sink.commit(self.source.id, obj)
            self.ledger.complete(claim)
        except Exception as exc:
            for sink in opened:
                sink.abort(self.source.id, obj)
            self._object_failed(obj, claim, exc)
        else:
            with self._lock:
                self.result.objects += 1
            self.errors.succeeded(obj.key)
            log.info("shipped %s: %d lines", obj.key, shipped[0])
            self.progress.object_finished(obj, None)
        finally:
            self.leases.drop(claim)
            with self._lock:
                self._lost.discard((obj.key, obj.etag))
                self.result.lines += shipped[0]
                self.result.bytes += shipped[1]
                self._counters.update(counters)

    def _not_claimed(self, obj: ObjectInfo) -> None:
        """Another live runner has ``obj``, it is done, or its runners kept dying on it."""
        entry = self.ledger.get(self.source.id, obj.key, obj.etag)
        if entry is not None and entry.status == Status.FAILED and entry.error_class == CRASHED:
            # A poison object: the ledger moved it to the error queue (invariant 3).
            self.errors.failed(None, obj.key, entry.last_error or CRASHED, CRASHED)
            return
        log.info("%s: done, or held by another runner; skipped", obj.key)
        if self.share.shared:
            return  # most likely a sibling's: counting it would count it twice
        with self._lock:
            self.result.skipped += 1

    def _ship_formats(
        self,
        obj: ObjectInfo,
        claim: Claim,
        route: Route,
        opened: list[Sink],
        counters: collections.Counter[str],
        shipped: list[int],
    ) -> None:
        """Ship with the first format of the route's chain that decodes the object."""
        for i, fmt in enumerate(route.formats):
            try:
                self._ship_format(obj, claim, route, fmt, opened, counters, shipped)
                return
            except DecodeError:
                # A format chain tries the next format, as long as nothing was shipped.
                if i + 1 == len(route.formats) or shipped[0] or claim.position:
                    raise
                for sink in opened:
                    sink.abort(self.source.id, obj)
                opened.clear()

    def _ship_format(
        self,
        obj: ObjectInfo,
        claim: Claim,
        route: Route,
        fmt: str,
        opened: list[Sink],
        counters: collections.Counter[str],
        shipped: list[int],
    ) -> None:
        """Decode ``obj`` with ``fmt`` and ship it to the route's sinks, checkpointing."""
        opts = self.options
        for sink in route.sinks:
            sink.open(self.source.id, obj, claim.position)
            opened.append(sink)
        ctx = DecodeContext(
            obj.key, obj.last_modified_ms, route.format_options or self.format_options, counters
        )
        stream = batches(
            decode_object(self._counted(self.source.open(obj, opts.read_chunk)), ctx, fmt),
            source=self.source.id,
            key=obj.key,
            skip=claim.position,
            max_lines=opts.batch_lines,
            max_bytes=opts.batch_bytes,
            max_wait=opts.batch_wait,
        )
        lost = (obj.key, obj.etag)
        # Three stages in three threads: decode → prepare (sinks encode and gzip) → send.
        # zlib and sockets release the GIL, so the stages overlap on two cores.
        decoded = prefetch(stream, 1, self.stop)
        for batch in prefetch(self._prepared(decoded, route.sinks, ctx), 1, self.stop):
            for sink in route.sinks:
                outcome = self.deliverer.deliver(sink, batch, lambda: lost in self._lost)
                if isinstance(outcome, (Refused, RetryLater)):
                    raise NotDelivered(outcome)
            # Every sink acknowledged: only now may the ledger move (invariant 1).
            self.ledger.checkpoint(claim, batch.end, batch.nbytes, opts.lease_seconds)
            shipped[0] += len(batch)
            shipped[1] += batch.nbytes
            self.progress.advanced(len(batch), 0)
            if self.stop.is_set():
                raise Stopped()

    @staticmethod
    def _prepared(batches: Iterator[Batch], sinks: tuple[Sink, ...], ctx: DecodeContext
                  ) -> Iterator[Batch]:  # fmt: skip
        for batch in batches:
            batch.format = ctx.format_name or ""
            for sink in sinks:
                sink.prepare(batch)
            yield batch

    def _object_failed(self, obj: ObjectInfo, claim: Claim, exc: Exception) -> None:
        if isinstance(exc, ClaimLostError) or (obj.key, obj.etag) in self._lost:
            return  # another runner ships it now; it was announced when the claim was lost
        stopped = isinstance(exc, NotDelivered) and getattr(exc.outcome, "stopped", False)
        if isinstance(exc, Stopped) or stopped or self.stop.is_set():
            # Shutdown: a retry wait cut short is not the object's fault; resume it next run.
            with contextlib.suppress(ClaimLostError):
                self.ledger.release(claim)
            return
        error_class = type(exc).__name__
        if isinstance(exc, NotDelivered):
            error_class = exc.outcome.error_class
        elif not isinstance(exc, LogferryError):
            log.debug("unexpected error shipping %s", obj.key, exc_info=True)
        retry_later = isinstance(exc, NotDelivered) and isinstance(exc.outcome, RetryLater)
        if is_transient(exc) or retry_later:
            with self._lock:
                self.transient.add(obj.key)
        if is_transient(exc) and claim.attempts < self.options.max_attempts:
            with self._lock:
                self._transient.add((obj.key, obj.etag))
        self.errors.failed(claim, obj.key, one_line(exc), error_class)

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                self.progress.advanced(0, len(chunk))
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()


def follow_bucket(
    source: BucketSource,
    router: Router,
    ledger: Ledger,
    options: ShipOptions,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_cycle: Callable[[ShipResult], None] | None = None,
) -> ShipResult:
    """Catch up ``source`` every ``options.interval`` seconds until ``stop`` is set.

    Each cycle is one catch-up run (``on_cycle`` gets its result); the result returned adds
    them up. Like a followed stream, a follow stopped by a signal is not "interrupted": the
    objects in flight were released and the next run resumes them.
    """
    stop = stop or threading.Event()
    total = ShipResult(source.display)
    failed: dict[str, Failure] = {}
    counters: collections.Counter[str] = collections.Counter()
    began = time.monotonic()
    while True:
        result = ObjectRunner(source, router, ledger, options, progress=progress, stop=stop).run()
        total.objects += result.objects
        total.lines += result.lines
        total.bytes += result.bytes
        total.skipped += result.skipped
        total.held = result.held
        total.dead_letters += result.dead_letters
        total.reports.update(result.reports)
        counters.update(result.counters)
        failed.update((f.key, f) for f in result.failed)
        if on_cycle is not None:
            on_cycle(result)
        if stop.wait(options.interval):
            break
    total.failed = list(failed.values())
    total.counters = dict(counters)
    total.seconds = time.monotonic() - began
    return total
