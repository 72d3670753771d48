"""What a run reports: progress events while it goes, a result when it ends."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from logferry.errors import LogferryError
from logferry.records import ObjectInfo

if TYPE_CHECKING:
    from logferry.sinks.base import Sink


class Progress:
    """Receives progress events; the default ignores them. Called from worker threads."""

    #: What is counted, plural: ``objects``, or a stream source's ``files``/``streams``.
    unit: str = "objects"

    def start_pass(self, objects: int, nbytes: int) -> None:
        """A pass over ``objects`` objects of ``nbytes`` stored bytes begins."""

    def object_started(self, obj: ObjectInfo) -> None:
        """A worker begins ``obj``."""

    def advanced(self, lines: int, raw_bytes: int) -> None:
        """``lines`` were acknowledged; ``raw_bytes`` stored bytes were read."""

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """``obj`` is done (``error`` None) or failed (reported once, here)."""

    def message(self, text: str) -> None:
        """A notice for the user (skips, re-sends)."""

    def close(self) -> None:
        """The run is over."""


@dataclass
class Failure:
    """Something that could not be shipped (an object, a partition, a record range)."""

    key: str
    error: str


@dataclass
class ShipResult:
    """Summary of a run; ``to_dict`` is the ``--json`` output."""

    source: str
    objects: int = 0
    lines: int = 0
    bytes: int = 0
    skipped: int = 0
    held: int = 0
    failed: list[Failure] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0
    reports: dict[str, Any] = field(default_factory=dict)
    #: Records refused for good and kept as dead letters (``logferry drain`` re-delivers them).
    dead_letters: int = 0
    #: "objects" for buckets, "partitions" for files and streams.
    unit: str = "objects"

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing waits in the error queue, and no interruption."""
        return not self.failed and not self.interrupted and not self.held

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary."""
        return {
            "source": self.source,
            "objects": self.objects,
            "lines": self.lines,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "held": self.held,
            "failed": [{"key": f.key, "error": f.error} for f in self.failed],
            "dead_letters": self.dead_letters,
            "counters": dict(sorted(self.counters.items())),
            **({"handlers": self.reports} if self.reports else {}),
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], unit: str = "objects") -> ShipResult:
        """A result back from its JSON summary (what a copy of a command reports)."""
        return cls(
            str(data["source"]),
            objects=int(data.get("objects", 0)),
            lines=int(data.get("lines", 0)),
            bytes=int(data.get("bytes", 0)),
            skipped=int(data.get("skipped", 0)),
            held=int(data.get("held", 0)),
            failed=[Failure(str(f["key"]), str(f["error"])) for f in data.get("failed", ())],
            counters={str(k): int(v) for k, v in data.get("counters", {}).items()},
            interrupted=bool(data.get("interrupted", False)),
            seconds=float(data.get("seconds", 0.0)),
            reports=dict(data.get("handlers", {})),
            dead_letters=int(data.get("dead_letters", 0)),
            unit=unit,
        )


def merge_results(results: Iterable[ShipResult]) -> ShipResult:
    """One result for copies of a run that shared a source: counts added up, failures of
    each key once, the longest time; handler reports are each copy's (the last one wins)."""
    results = list(results)
    merged = ShipResult(results[0].source, unit=results[0].unit)
    counters: collections.Counter[str] = collections.Counter()
    failed: dict[str, Failure] = {}
    for result in results:
        merged.objects += result.objects
        merged.lines += result.lines
        merged.bytes += result.bytes
        merged.skipped += result.skipped
        merged.held += result.held
        merged.dead_letters += result.dead_letters
        merged.interrupted |= result.interrupted
        merged.seconds = max(merged.seconds, result.seconds)
        merged.reports.update(result.reports)
        counters.update(result.counters)
        failed.update((f.key, f) for f in result.failed)
    merged.failed = list(failed.values())
    merged.counters = dict(counters)
    return merged


def plural(n: int, unit: str) -> str:
    """``1 object``, ``2 objects``: ``unit`` is the plural form."""
    return f"{n:,} {unit.removesuffix('s') if n == 1 else unit}"


def one_line(exc: BaseException) -> str:
    """A one-line reason for an exception, naming its type when it is not one of ours."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, LogferryError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def close_result(
    result: ShipResult,
    sinks: Iterable[Sink],
    counted: Iterable[Mapping[str, int]],
) -> None:
    """End a run's result: the sinks' counters and reports, plus ``counted`` (the runner's
    own, the decoders', the retries), zeros left out. The sinks' health stops counting."""
    from logferry.engine.metrics import METRICS

    counters: collections.Counter[str] = collections.Counter()
    for more in counted:
        counters.update(more)
    for sink in sinks:
        counters.update(sink.counters())
        result.reports.update(sink.report())
        METRICS.forget(sink.name)
    result.counters = {k: v for k, v in counters.items() if v}
