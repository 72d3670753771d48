"""The ledger contract: the single source of truth about progress.

One row per (source, key, etag): status, last acknowledged position, counts,
attempts and last error. Runners *claim* a row before shipping it; a claim is
held by an owner until its lease expires, so no two live runners ship the same
object and a dead runner's work is picked up after the lease. Backends (SQLite
and PostgreSQL) implement this interface and pass one shared test suite.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from logferry.errors import LogferryError
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
    #: A stream partition's cursor (see :class:`Claim`), None for objects.
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """What a listing needs to know about an object the ledger has seen."""

    etag: str
    status: Status
    attempts: int


def shipped_before(seen: Seen | Entry | None, obj: ObjectInfo, pruned_before: int | None) -> bool:
    """Whether ``obj`` (this version) was shipped: done in the ledger, or unknown to it and
    last modified before the source's prune watermark (``logferry ledger prune`` deleted its
    row). Every place that skips shipped objects asks this, so a prune never re-ships."""
    if seen is None:
        return pruned_before is not None and obj.last_modified_ms < pruned_before
    return seen.status == Status.DONE and seen.etag == obj.etag


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


def _proc_id(path: str, read: Callable[[str], str]) -> str:
    """One identifier read from /proc; "-" where the platform has none, "?" when unreadable."""
    if not sys.platform.startswith("linux"):
        return "-"  # no PID namespaces to tell apart
    try:
        return read(path)
    except OSError:
        return "?"  # never equal to anything: judged by the lease alone


def _boot_id(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip().replace("-", "")[:16]


def _namespace(path: str) -> str:
    return str(os.stat(path).st_ino)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a claim: host name, process id, boot id and PID namespace (see ``new_owner_id``)."""

    host: str
    pid: int
    boot: str
    pidns: str

    @classmethod
    def parse(cls, owner: str) -> Owner | None:
        """The parts of an owner id made by :func:`new_owner_id`; None for anything else.

        Ids of older versions (``host:pid:random``) name no boot or namespace, so they
        parse to None: their claims are judged by the lease alone.
        """
        parts = owner.split(":")
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        host, pid, _, boot, pidns = parts
        return cls(host, int(pid), boot, pidns)

    def is_local(self) -> bool:
        """True when this owner's PID names a process we can see: same host, boot, namespace."""
        here = _here()
        return "?" not in (here.boot, here.pidns, self.boot, self.pidns) and (
            self.host,
            self.boot,
            self.pidns,
        ) == (here.host, here.boot, here.pidns)


def _here() -> Owner:
    return Owner(
        socket.gethostname(),
        os.getpid(),
        _proc_id("/proc/sys/kernel/random/boot_id", _boot_id),
        _proc_id("/proc/self/ns/pid", _namespace),
    )


def new_owner_id() -> str:
    """An owner id naming this process: ``host:pid:random:boot-id:pid-namespace``.

    The boot id and the PID namespace say where the PID means something: a runner in
    another container on the same host name has its own PIDs, which we must not probe.
    """
    here = _here()
    return f"{here.host}:{here.pid}:{uuid.uuid4().hex[:8]}:{here.boot}:{here.pidns}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process of this host, boot and PID namespace that no longer runs.

    A kill -9 leaves a claim behind; when we can see its process table we can tell at once
    that it is gone instead of waiting for the lease to expire. Anywhere else (another host,
    container or boot, an owner id of an older version) only the lease says.
    """
    parsed = Owner.parse(owner)
    if parsed is None or not parsed.is_local() or parsed.pid == os.getpid():
        return False
    try:
        os.kill(parsed.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LedgerError(LogferryError):
    """The ledger cannot be read or written now (locked, timed out, read-only, unreachable)."""


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
        self,
        source: str,
        obj: ObjectInfo,
        owner: str,
        lease_seconds: float,
        *,
        force: bool = False,
        max_attempts: int | None = None,
    ) -> Claim | None:
        """Claim ``obj`` for ``owner``; None when it is done (unless ``force``) or held by a live runner.

        Every claim counts one attempt, a takeover of a dead runner's claim included.
        ``force`` re-ships a done object from the start. With ``max_attempts``, a claim
        whose holder died (lease run out, or its process gone) and whose takeover would
        exceed that many attempts is not taken: the row fails with error class
        ``Crashed`` (it likely kills its runner: out of memory, say) and None is returned,
        so the runner moves on and the object waits in the error queue for ``drain``.
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
        """Aggregate progress per source (objects pruned from the ledger still count)."""

    def pruned_before(self, source: str) -> int | None:
        """Epoch ms before which ``source`` was pruned (``logferry ledger prune``), if ever.

        Objects of ``source`` last modified before it and unknown to the ledger were shipped
        and then pruned: a listing must skip them.
        """
        return None

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

    # -- named cursors: how far a listing got (see ledger/cursors.py) --

    @abstractmethod
    def get_cursor(self, name: str) -> str | None:
        """The cursor stored under ``name`` (``logferry enqueue``'s last published key), or None."""

    @abstractmethod
    def set_cursor(self, name: str, cursor: str) -> None:
        """Store ``cursor`` under ``name``, durably before returning."""

    @abstractmethod
    def delete_cursors(self, prefix: str) -> int:
        """Forget the cursors whose names start with ``prefix``; return how many."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise ``LedgerError`` unless a write could go through now (readiness checks)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
