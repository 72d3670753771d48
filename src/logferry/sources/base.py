"""The bucket source contract: list objects (partitions) and stream one.

An object is immutable under its etag, so it resumes from a record count: the engine reads it
again from the start and skips the records the ledger says were acknowledged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from logferry.records import ObjectInfo

READ_CHUNK = 1024 * 1024


class BucketSource(ABC):
    """A bucket-like store of log objects: S3, IBM COS, MinIO, a local directory."""

    #: Identity in the ledger, without credentials (e.g. ``s3://bucket``).
    id: str
    #: What the user asked for, without credentials (e.g. ``s3://bucket/prefix``).
    display: str

    @abstractmethod
    def list_pages(self) -> Iterator[list[ObjectInfo]]:
        """Yield pages of the objects under the prefix (paginated, never all at once)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Describe one object; raise ``SourceError`` if it does not exist."""

    @abstractmethod
    def open(self, obj: ObjectInfo, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Stream the object's bytes from the start; raise ``SourceError`` if it cannot be read.

        Resume contract: the same etag yields the same bytes every time, so decoding them
        again gives the same records in the same order, and the engine can skip the first
        ``position`` of them (acknowledged before a crash) without a gap or a duplicate. An
        object replaced under the same key has another etag and is a new object.
        """

    @abstractmethod
    def delete(self, keys: list[str]) -> int:
        """Delete objects; return how many were deleted."""

    def close(self) -> None:  # noqa: B027
        """Release clients."""
