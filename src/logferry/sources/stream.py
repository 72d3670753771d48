"""The stream source contract: partitions that keep growing (log streams, files).

A stream source lists **partitions** (a CloudWatch log stream, a file of a tail glob). Each
is read from a **cursor**: opaque text the partition hands back after every read (a
CloudWatch forward token, ``offset`` of a file) that the ledger stores once every sink has
acknowledged the records before it. ``open(part, cursor, position)`` must resume exactly
after those records; ``position`` is the count of records acknowledged so far, which sources
may use as the record number of the next record (exactly-once keys in database sinks).

Like Bytewax's ``StatefulSourcePartition``: ``read`` is ``next_batch``, the returned
cursor is ``snapshot``, and ``open(part, cursor, …)`` is ``build_part(for_part, resume_state)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from logferry.records import Chunk


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition of a stream source."""

    #: Stable name within the source (stream name, file path): the ledger key.
    key: str
    #: What makes it a different partition under the same name (a file's content
    #: fingerprint, a stream's creation time): the ledger's etag.
    version: str
    size: int = 0
    last_modified_ms: int = 0


@dataclass(slots=True)
class ReadResult:
    """Records read from a partition and the cursor just after them."""

    chunk: Chunk
    cursor: str | None
    #: True when the partition has nothing more right now (the caller may wait or move on).
    caught_up: bool
    #: True when the partition will never have more (a rotated-away file, a deleted stream).
    finished: bool = False


class StreamPartition(ABC):
    """An open partition; not shared between threads."""

    @abstractmethod
    def read(self, max_records: int) -> ReadResult:
        """Return up to ``max_records`` new records without blocking for long."""

    def close(self) -> None:  # noqa: B027
        """Release files and clients."""


class StreamSource(ABC):
    """A source whose partitions grow: CloudWatch Logs, tailed files."""

    #: Ledger identity without credentials (``cloudwatch://GROUP_PREFIX``, ``tail:///glob``).
    id: str
    #: What the user asked for, without credentials.
    display: str
    #: True when a partition's version identifies its content wherever it is (a file's
    #: fingerprint): a new key with a known version is the same data renamed, and resumes
    #: from the old key's cursor. False when versions can repeat (timestamps).
    versions_identify_content: bool = False

    @abstractmethod
    def partitions(self) -> list[PartitionInfo]:
        """The partitions that exist now (called again periodically to find new ones)."""

    @abstractmethod
    def open(self, part: PartitionInfo, cursor: str | None, position: int) -> StreamPartition:
        """Open ``part`` to resume after ``cursor`` (None: from the configured start)."""

    def wait(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until new data may be there (inotify etc.)."""
        import time

        time.sleep(timeout)

    def close(self) -> None:  # noqa: B027
        """Release clients and watches."""
