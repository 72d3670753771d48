"""The bucket source contract: list objects (partitions) and stream one."""

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
        """Stream the object's bytes; raise ``SourceError`` if it cannot be read."""

    @abstractmethod
    def delete(self, keys: list[str]) -> int:
        """Delete objects; return how many were deleted."""

    def close(self) -> None:  # noqa: B027
        """Release clients."""
