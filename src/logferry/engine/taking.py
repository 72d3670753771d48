"""Taking a partition of a stream: claim it, find where it resumes, open it and its sinks."""

from __future__ import annotations

import contextlib
import logging

from logferry.codecs.formats.base import FormatOptions
from logferry.codecs.stream import StreamDecoder
from logferry.engine.buffer import Held, Lane
from logferry.engine.results import one_line, plural
from logferry.engine.routing import Route, Router
from logferry.ledger.base import Claim, ClaimLostError, Ledger, Status
from logferry.records import ObjectInfo
from logferry.sinks.base import Batching, Sink
from logferry.sources.stream import PartitionInfo, StreamSource

log = logging.getLogger("logferry")


def as_object(info: PartitionInfo, key: str | None = None) -> ObjectInfo:
    """A partition as the ledger and the sinks see it."""
    return ObjectInfo(key or info.key, info.size, info.version, info.last_modified_ms)


class PartitionFailed(Exception):
    """Taking a partition failed for a reason that belongs in the error queue."""

    def __init__(self, claim: Claim, error: str, error_class: str) -> None:
        super().__init__(error)
        self.claim, self.error, self.error_class = claim, error, error_class


class Taker:
    """Opens partitions of ``source`` for a runner identified by ``owner``."""

    def __init__(
        self,
        source: StreamSource,
        router: Router,
        ledger: Ledger,
        owner: str,
        lease_seconds: float,
        format_options: FormatOptions,
        batching: Batching,
    ) -> None:
        self.source = source
        self.router = router
        self.ledger = ledger
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.format_options = format_options
        self.batching = batching

    def take(self, info: PartitionInfo) -> Held | None:
        """``info`` claimed and opened; None when another live runner has it (or it is done).

        Raises :class:`PartitionFailed` (its claim inside) when it cannot be shipped.
        """
        claim = self.ledger.claim(self.source.id, as_object(info), self.owner, self.lease_seconds)
        if claim is None:
            return None
        route = self.router.route(info.key)
        if route is None:
            raise PartitionFailed(claim, self.router.no_route(), "ObjectError")
        if self.source.versions_identify_content:
            other = self.ledger.held_elsewhere(self.source.id, info.version, info.key)
            if other is not None:
                # Another runner follows this content under its old name (a file renamed
                # while it reads): leave it to that one, or both would ship it.
                with contextlib.suppress(ClaimLostError):
                    self.ledger.release(claim)
                return None
        position, cursor_text = self._resume_point(info, claim, route)
        decoder = StreamDecoder(route.formats[0], route.format_options or self.format_options)
        try:
            cursor = self.source.cursor_type.decode(cursor_text)
            partition = self.source.open(info, cursor, position, decoder)
        except Exception as exc:
            raise PartitionFailed(claim, one_line(exc), type(exc).__name__) from None
        opened: list[Sink] = []
        try:
            for sink in route.sinks:
                sink.open(self.source.id, as_object(info), position, stream=True)
                opened.append(sink)
        except Exception as exc:
            for sink in opened:
                sink.abort(self.source.id, as_object(info))
            partition.close()
            raise PartitionFailed(claim, one_line(exc), type(exc).__name__) from None
        lanes = [Lane(s, s.batching or self.batching, position, position) for s in route.sinks]
        return Held(info, claim, partition, route, lanes, position, position, decoder=decoder)

    def holder(self, info: PartitionInfo) -> str | None:
        """The other live runner that holds ``info`` (or its content under another name)."""
        key = info.key
        if self.source.versions_identify_content:
            key = self.ledger.held_elsewhere(self.source.id, info.version, info.key) or key
        entry = self.ledger.get(self.source.id, key, info.version)
        if entry is None or entry.status != Status.ACTIVE or entry.owner in (None, self.owner):
            return None
        return entry.owner

    def _resume_point(
        self, info: PartitionInfo, claim: Claim, route: Route
    ) -> tuple[int, str | None]:
        """Where ``info`` resumes: its checkpoint, or that of the same content renamed."""
        if claim.cursor is not None or claim.position or not self.source.versions_identify_content:
            return claim.position, claim.cursor
        # Same content under a new name (a file renamed while nobody ran): carry on.
        moved = self.ledger.latest_cursor(self.source.id, info.version)
        if moved is None:
            return 0, None
        old_key, position, cursor = moved
        # Records after the old name's checkpoint are read again under the new one: sinks
        # that keep per-partition output drop them (and a torn line) there.
        for sink in route.sinks:
            try:
                sink.settle(self.source.id, as_object(info, old_key), position)
            except Exception as exc:
                log.warning("%s: %s: %s", old_key, sink.name, one_line(exc))
        return position, cursor


def idle_notice(
    source: StreamSource,
    parts: list[PartitionInfo],
    holders: dict[str, str],
    *,
    first: bool,
    holding: bool,
) -> str:
    """What to tell a user whose run has nothing to read ("": nothing to tell).

    On the ``first`` listing, an empty match gets the source's hint (a typo in a prefix, a
    folder that does not exist); a runner ``holding`` nothing while others hold every
    partition it found names them.
    """
    if not parts and first:
        try:
            return source.empty_hint()
        except Exception as exc:  # the hint's own look-up failed: the plain fact
            return f"{source.display}: no {source.unit} found ({one_line(exc)})"
    if holders and not holding:
        return (
            f"{source.display}: {plural(len(holders), source.unit)} "
            f"held by another runner ({', '.join(sorted(set(holders.values())))}); "
            "none left for this one"
        )
    return ""
