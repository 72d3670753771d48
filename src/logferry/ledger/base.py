"""The ledger contract: the single source of truth about progress.

One row per (source, key, etag): status, last acknowledged position, counts,
attempts and last error. Runners *claim* a row before shipping it; a claim is
held by an owner until its lease expires, so no two live runners ship the same
object and a dead runner's work is picked up after the lease. Backends (SQLite
now, Postgres later) implement this interface and pass one shared test suite.
"""

from __future__ import annotations

import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from logferry.records import Batch, ObjectInfo

if TYPE_CHECKING:
    from logferry.ledger.dead_letters import DeadLetter


class Status(StrEnum):
    """Where an object stands."""

    PENDING = "pending"  # seen, partly shipped, nobody holds it
    ACTIVE = "active"  # claimed by a runner
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Claim:
    """A runner's hold on one object; ``position`` is where shipping resumes."""

    source: str
    key: str
    etag: str
    owner: str
    position: int
    attempts: int
    #: Where a stream partition resumes (a CloudWatch token, a file offset): opaque text
    #: stored beside ``position`` for sources that cannot resume from a record count.
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger row as seen by listings, status output and the error queue."""

    id: int
    source: str
    key: str
    etag: str
    size: int
    status: Status
    position: int
    lines: int
    bytes: int
    attempts: int
    error_class: str | None
    last_error: str | None
    owner: str | None
    first_seen: float
    updated: float


@dataclass(frozen=True, slots=True)
class Seen:
    """What a listing needs to know about an object the ledger has seen."""

    etag: str
    status: Status
    attempts: int


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """Aggregate progress of one source."""

    source: str
    done: int
    failed: int
    in_progress: int
    lines: int
    bytes: int
    last_shipped: float | None


def new_owner_id() -> str:
    """An owner id that names this host and process, so stale claims can be spotted."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process on this host that no longer runs.

    A kill -9 leaves a claim behind; on the same host we can tell at once that
    its process is gone instead of waiting for the lease to expire.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class ClaimLostError(Exception):
    """Our claim was taken over (lease expired): stop shipping this object."""


class Ledger(ABC):
    """Progress store shared by runners."""

    #: URL of the ledger with any password removed, for messages.
    display: str

    @abstractmethod
    def lookup(self, source: str, keys: Iterable[str]) -> dict[str, Seen]:
        """Map each known key of ``keys`` to its most recently updated row."""

    @abstractmethod
    def get(self, source: str, key: str, etag: str) -> Entry | None:
        """Return the row of one object version, if any."""

    @abstractmethod
    def claim(
        self, source: str, obj: ObjectInfo, owner: str, lease_seconds: float, *, force: bool = False
    ) -> Claim | None:
        """Claim ``obj`` for ``owner``; None when it is done (unless ``force``) or held by a live runner.

        ``force`` re-ships a done object from the start.
        """

    @abstractmethod
    def checkpoint(
        self,
        claim: Claim,
        position: int,
        add_bytes: int,
        lease_seconds: float,
        cursor: str | None = None,
    ) -> None:
        """Record that records up to ``position`` (and ``cursor``, if given) are acknowledged
        by every sink; renew the lease.

        Raises :class:`ClaimLostError` if another runner took the claim over.
        """

    @abstractmethod
    def latest_cursor(self, source: str, etag: str) -> tuple[str, int, str] | None:
        """(key, position, cursor) of the most recently updated row of ``etag`` under any key.

        A tailed file renamed while nobody ran keeps its fingerprint (the etag): its new
        path resumes where the old one stopped.
        """

    @abstractmethod
    def held_elsewhere(self, source: str, etag: str, key: str) -> str | None:
        """Another key under which ``etag`` is claimed now (a live lease), else None.

        Two runners tailing one directory must not both read a renamed file: one follows
        it under its old path through the open file, the other would see the new path.
        """

    @abstractmethod
    def renew(self, claims: Iterable[Claim], lease_seconds: float) -> list[Claim]:
        """Extend the lease of claims still held (heartbeat); return the ones no longer ours.

        A claim is lost when its lease ran out and another runner took the row (a process
        paused for longer than the lease, say): its holder must stop shipping it.
        """

    @abstractmethod
    def complete(self, claim: Claim) -> None:
        """Mark the object done."""

    @abstractmethod
    def fail(self, claim: Claim, error: str, error_class: str = "") -> None:
        """Mark the object failed with a one-line reason; keep its position for a resume.

        Failed rows are the error queue: ``errors`` lists them, ``drain`` retries them.
        """

    @abstractmethod
    def release(self, claim: Claim) -> None:
        """Give the claim back unfinished (shutdown); the position is kept."""

    @abstractmethod
    def entries(self, source: str | None = None, status: Status | None = None) -> list[Entry]:
        """Rows, optionally filtered by source and status, newest first."""

    @abstractmethod
    def entry(self, entry_id: int) -> Entry | None:
        """Return the row with this id (as shown by ``logferry errors``)."""

    @abstractmethod
    def purge_failed(self, ids: Iterable[int] | None = None, source: str | None = None) -> int:
        """Delete failed rows (all, or those ids / that source); return how many."""

    @abstractmethod
    def status(self) -> list[SourceStatus]:
        """Aggregate progress per source."""

    # -- dead letters: records a sink refused for good (see ledger/dead_letters.py) --

    @abstractmethod
    def add_dead_letter(
        self, batch: Batch, etag: str, sink: str, error_class: str, error: str
    ) -> int:
        """Keep the records of ``batch`` with their source range; return the letter's id."""

    @abstractmethod
    def dead_letters(
        self, source: str | None = None, ids: Iterable[int] | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first, optionally of one source or these ids."""

    @abstractmethod
    def dead_letter_records(self, letter: DeadLetter) -> Batch | None:
        """The stored records of ``letter`` (None once removed)."""

    @abstractmethod
    def remove_dead_letters(self, ids: Iterable[int]) -> int:
        """Forget these dead letters; return how many were removed."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
