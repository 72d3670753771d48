"""Draining the error queue: ship failed objects again, deliver dead letters.

A failed object is read again from its source and resumes at its last acknowledged
position. A dead letter (records a sink refused, from a stream that cannot be read again)
is delivered from the ledger under its range's name, ``KEY#START-END``, so sinks that are
exactly-once on replay (files, DuckDB, InfluxDB) stay so when a drain is repeated. Only
what every sink acknowledged leaves the queue.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from logferry.config import ShipOptions
from logferry.engine.delivery import Delivered, Deliverer, RetryPolicy
from logferry.engine.objects import ObjectRunner
from logferry.engine.results import Progress
from logferry.engine.routing import Router
from logferry.errors import ConfigError
from logferry.ledger.base import Entry, Ledger, Status
from logferry.ledger.dead_letters import ID_PREFIX, DeadLetter
from logferry.records import ObjectInfo
from logferry.sinks.base import Sink
from logferry.sources import BucketSource, is_stream_url, open_source, open_stream_source


@dataclass
class DrainResult:
    """What a drain delivered and what still fails; ``to_dict`` is the ``--json`` output."""

    drained: int = 0
    lines: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: Failed stream partitions: retried by the next run of their source, not by drain.
    partitions: int = 0

    @property
    def ok(self) -> bool:
        """True when everything drained."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary."""
        return {"drained": self.drained, "lines": self.lines, "failed": self.failed}


def parse_ids(ids: Sequence[str] | None) -> tuple[set[int], set[int]] | None:
    """Error-queue ids (``12``, ``D3``) as (object ids, dead-letter ids); None: all."""
    if not ids:
        return None
    objects: set[int] = set()
    letters: set[int] = set()
    for raw in ids:
        text = str(raw).strip().lstrip("#")
        letter = text[:1].upper() == ID_PREFIX
        digits = text[1:] if letter else text
        if not digits.isdigit():
            raise ConfigError(f"bad error id {raw!r}: use the ids `logferry errors` lists (12, D3)")
        (letters if letter else objects).add(int(digits))
    return objects, letters


def source_id_of(
    url: str,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
) -> str:
    """The ledger id of the source at ``url`` (what its rows are filed under)."""
    src = (
        open_stream_source(url, endpoint_url=endpoint_url, profile=profile, region=region)
        if is_stream_url(url)
        else open_source(url, endpoint_url=endpoint_url, profile=profile, region=region)
    )
    try:
        return src.id
    finally:
        src.close()


def drain_errors(
    ledger: Ledger,
    sinks: list[Sink],
    *,
    ids: Sequence[str] | None = None,
    source: str | None = None,
    options: ShipOptions | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> DrainResult:
    """Retry the error queue into ``sinks``; see the module docstring."""
    options = options or ShipOptions()
    stop = stop or threading.Event()
    wanted = parse_ids(ids)
    source_id = source_id_of(source, endpoint_url, profile, region) if source else None
    open_bucket = functools.partial(
        open_source, endpoint_url=endpoint_url, profile=profile, region=region
    )
    entries = [
        e
        for e in ledger.entries(source=source_id, status=Status.FAILED)
        if wanted is None or e.id in wanted[0]
    ]
    letters = ledger.dead_letters(source_id, None if wanted is None else wanted[1])
    if wanted is not None:
        found = {e.id for e in entries}, {d.id for d in letters}
        missing = [str(i) for i in sorted(wanted[0] - found[0])]
        missing += [f"{ID_PREFIX}{i}" for i in sorted(wanted[1] - found[1])]
        if missing:
            raise ConfigError(f"not in the error queue: {', '.join(missing)}")
    result = DrainResult()
    _drain_objects(ledger, sinks, entries, source, options, open_bucket, progress, stop, result)
    deliverer = Deliverer(RetryPolicy(give_up_after=options.retry_timeout), stop)
    for letter in reversed(letters):  # oldest first: records arrive in their order
        if stop.is_set():
            break
        _drain_letter(ledger, sinks, letter, deliverer, result)
    return result


def _drain_objects(
    ledger: Ledger,
    sinks: list[Sink],
    entries: list[Entry],
    source_url: str | None,
    options: ShipOptions,
    open_bucket: Callable[[str], BucketSource],
    progress: Progress | None,
    stop: threading.Event,
    result: DrainResult,
) -> None:
    by_source: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if is_stream_url(e.source):
            result.partitions += 1  # the next run of the stream takes it again
        else:
            by_source[e.source].append(e)
    for source_id, group in by_source.items():
        src = open_bucket(source_url or source_id)
        try:
            keys = tuple(sorted({e.key for e in group}))
            # Draining is the explicit "try again": no attempt limit.
            opts = options.model_copy(update={"mode": "key", "keys": keys,
                                              "max_attempts": 1_000_000})  # fmt: skip
            runner = ObjectRunner(src, Router.to_all(sinks, options.format), ledger, opts,
                                  progress=progress, stop=stop)  # fmt: skip
            shipped = runner.run()
        finally:
            src.close()
        failed = {f.key: f.error for f in shipped.failed}
        result.lines += shipped.lines
        for e in group:
            if e.key in failed:
                result.failed.append({"id": str(e.id), "key": e.key, "error": failed[e.key]})
                continue
            result.drained += 1
            # The object shipped; a row left failed is an older version of it: forget it.
            current = ledger.entry(e.id)
            if current is not None and current.status == Status.FAILED:
                ledger.purge_failed([e.id])


def _drain_letter(
    ledger: Ledger, sinks: list[Sink], letter: DeadLetter, deliverer: Deliverer, result: DrainResult
) -> None:
    batch = ledger.dead_letter_records(letter)
    if batch is None:
        return  # drained or purged by someone else meanwhile
    obj = ObjectInfo(letter.range_key, letter.nbytes, letter.etag, 0)
    opened: list[Sink] = []
    try:
        for sink in sinks:
            sink.open(letter.source, obj, 0)
            opened.append(sink)
            outcome = deliverer.deliver(sink, batch)
            if not isinstance(outcome, Delivered):
                raise _Undelivered(f"{sink.name}: {outcome.reason}")
        for sink in opened:
            sink.commit(letter.source, obj)
    except Exception as exc:
        for sink in opened:
            sink.abort(letter.source, obj)
        result.failed.append({"id": letter.label, "key": letter.range_key, "error": str(exc)})
        return
    ledger.remove_dead_letters([letter.id])
    result.drained += 1
    result.lines += len(batch)


class _Undelivered(Exception):
    """A sink did not take a dead letter."""
