"""The sink contract: take a batch, return only once it is acknowledged.

A sink may be shared by several worker threads, each shipping a different
object, so per-object state is keyed by ``(source, key)`` and ``write`` must be
thread-safe. The runner checkpoints a batch's ``end`` in the ledger only after
every sink's ``write`` returned for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from logferry.records import Batch, ObjectInfo


@dataclass(frozen=True, slots=True)
class Batching:
    """When a stream hands a sink its next batch: at ``lines`` records, ``bytes`` of log
    text, or once the oldest record has waited ``wait`` seconds, whichever comes first."""

    lines: int
    bytes: int
    wait: float


class Sink(ABC):
    """Base class of every sink."""

    #: A display name without secrets, used in messages and summaries.
    name: str = "sink"
    #: This sink's own batching of streams (a pipeline file's ``batch_lines`` etc. on the
    #: sink); None means the run's.
    batching: Batching | None = None

    def open(  # noqa: B027
        self, source: str, obj: ObjectInfo, resume_at: int, *, stream: bool = False
    ) -> None:
        """Prepare for an object whose first ``resume_at`` records are already acknowledged.

        ``stream`` marks a partition that keeps growing (a tailed file, a log stream): it
        may never be committed, so sinks that stage whole objects write in place instead.
        """

    def prepare(self, batch: Batch) -> None:  # noqa: B027
        """Optionally encode ``batch`` ahead of ``write``, in the decode stage's thread.

        Store the result in ``batch.prepared[id(self)]``; ``write`` must still work when
        nothing was prepared.
        """

    @abstractmethod
    def write(self, batch: Batch) -> None:
        """Deliver ``batch``; return when acknowledged, else raise a ``SinkError``."""

    def settle(self, source: str, obj: ObjectInfo, position: int) -> None:  # noqa: B027
        """A stream partition goes on under another name: records of ``obj`` from
        ``position`` on were never acknowledged and will come again under the new one."""

    def commit(self, source: str, obj: ObjectInfo) -> None:  # noqa: B027
        """Every record of ``obj`` was written; make it final (files rename here)."""

    def abort(self, source: str, obj: ObjectInfo) -> None:  # noqa: B027
        """Shipping ``obj`` stopped early; keep whatever lets a resume continue."""

    def close(self) -> None:  # noqa: B027
        """Flush and release resources at the end of a run."""

    def report(self) -> dict[str, Any]:
        """Results to show in the summary beside the counters (user handlers' ``result()``)."""
        return {}

    def counters(self) -> dict[str, int]:
        """Counters worth reporting in the summary (e.g. truncated lines)."""
        return {}
