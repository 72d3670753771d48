"""The stream source contract: partitions that keep growing (log streams, files).

A stream source lists **partitions** (a CloudWatch log stream, a file of a tail glob). Each
is read from a **cursor**: a typed :class:`Cursor` the partition hands back after every read
(a CloudWatch forward token, the offset of a file) that the engine stores in the ledger, as
text, once every sink has acknowledged the records before it. ``open(part, cursor,
position, decoder)`` must resume exactly after those records (the resume contract);
``position`` is the count of records acknowledged so far, which sources may use as the
record number of the next record (exactly-once keys in database sinks).

Partitions frame records (lines, events); the route's format turns them into records
through :class:`~logferry.codecs.stream.StreamDecoder`, the same codec step for every source.

Like Bytewax's ``StatefulSourcePartition``: ``read`` is ``next_batch``, the returned
cursor is ``snapshot``, and ``open(part, cursor, …)`` is ``build_part(for_part, resume_state)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

import orjson

from logferry.codecs.stream import StreamDecoder
from logferry.errors import SourceError
from logferry.records import Chunk


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a partition resumes. Each source subclasses it with its own fields.

    The ledger keeps :meth:`encode`'s text; :meth:`decode` reads it back (None for None).
    """

    def encode(self) -> str:
        """Compact JSON of the fields: what the ledger and state files keep."""
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, text: str | None) -> Self | None:
        """The cursor :meth:`encode` wrote; a one-line ``SourceError`` when unreadable."""
        if not text:
            return None
        try:
            data: Any = orjson.loads(text)
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
            raise SourceError(f"unreadable {cls.__name__} {text[:80]!r}") from None


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
    cursor: Cursor | None
    #: True when the partition has nothing more right now (the caller may wait or move on).
    caught_up: bool
    #: True when the partition will never have more (a rotated-away file, a deleted stream).
    finished: bool = False


class StreamPartition(ABC):
    """An open partition; not shared between threads."""

    @abstractmethod
    def read(self, max_records: int) -> ReadResult:
        """Return up to ``max_records`` new records without blocking for long.

        Resume contract: the returned cursor points just after the last record returned, so
        that ``open(part, cursor, …)`` in another process continues with the next record,
        neither skipping nor repeating one. Records come decoded by the partition's decoder.
        """

    def bytes_behind(self) -> int | None:
        """Bytes not read yet, where the partition knows (a file's size less its offset)."""
        return None

    def ingestion_delay(self) -> float | None:
        """Seconds between the newest record's arrival at its source and its reading."""
        return None

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
    #: The type of this source's cursors (the engine decodes the ledger's text with it).
    cursor_type: ClassVar[type[Cursor]] = Cursor
    #: What its partitions are called in messages, plural (``files``, ``streams``).
    unit: ClassVar[str] = "partitions"

    @abstractmethod
    def partitions(self) -> list[PartitionInfo]:
        """The partitions that exist now (called again periodically to find new ones)."""

    @abstractmethod
    def open(
        self,
        part: PartitionInfo,
        cursor: Cursor | None,
        position: int,
        decoder: StreamDecoder,
    ) -> StreamPartition:
        """Open ``part`` to resume just after ``cursor`` (None: from the configured start).

        Resume contract: the first record read is the one after the last record whose
        cursor was checkpointed, whatever happened in between (a crash, a restart on
        another host); ``position`` records were acknowledged before it. ``decoder`` is the
        codec step of the partition's route.
        """

    def selects(self, key: str) -> bool:
        """Whether partition ``key`` is still wanted (False once a reload narrowed the
        source's filters): the runner lets go of held partitions it no longer selects."""
        return True

    def empty_hint(self) -> str:
        """Why a listing found nothing, and the likely fix: what was looked up, and where."""
        return f"{self.display}: no {self.unit} found"

    def listing_changed(self) -> bool:
        """True (once) when partitions may have appeared since the last listing (a file
        created or renamed): the runner lists again without waiting for its interval."""
        return False

    def wait(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until new data may be there (inotify etc.)."""
        import time

        time.sleep(timeout)

    def close(self) -> None:  # noqa: B027
        """Release clients and watches."""
