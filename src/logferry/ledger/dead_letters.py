"""Dead letters: records a sink refused for good, kept durably beside the ledger.

A bucket object can always be read again, so its error-queue entry is its ledger row. A
stream cannot: once its cursor moved on, the refused records exist nowhere else. So they
are kept here with their source range (partition, version, record positions) and the sink
and reason, until ``logferry drain`` delivers them or ``logferry errors purge`` forgets them.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from logferry.records import Batch, as_list

#: Error-queue ids of dead letters carry this prefix (``D12``), objects' are plain numbers.
ID_PREFIX = "D"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Records ``[start, end)`` of partition ``key`` (version ``etag``) a sink refused."""

    id: int
    source: str
    key: str
    etag: str
    start: int
    end: int
    sink: str
    error_class: str
    error: str
    nbytes: int
    created: float

    @property
    def label(self) -> str:
        """The id as the error queue shows it."""
        return f"{ID_PREFIX}{self.id}"

    @property
    def range_key(self) -> str:
        """``KEY#START-END``: the name the records are delivered under by ``drain``."""
        return f"{self.key}#{self.start}-{self.end}"


def pack_records(batch: Batch) -> bytes:
    """The records of ``batch`` (lines, times, fields, format), compressed for storage."""
    doc = {
        "lines": batch.lines,
        "timestamps": as_list(batch.timestamps),
        "fields": batch.field_dicts(),
        "format": batch.format,
    }
    return zlib.compress(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), 1)


def unpack_records(letter: DeadLetter, payload: bytes) -> Batch:
    """The stored records as a batch at positions ``[0, n)`` of ``letter.range_key``."""
    doc = orjson.loads(zlib.decompress(payload))
    lines = doc["lines"]
    batch = Batch(
        letter.source,
        letter.range_key,
        0,
        len(lines),
        lines,
        doc["timestamps"],
        doc["fields"],
        letter.nbytes,
    )
    batch.format = doc.get("format") or ""
    return batch


_COLUMNS = "id, source, key, etag, start_pos, end_pos, sink, error_class, error, nbytes, created"


class DeadLetterStore:
    """Dead-letter statements shared by the SQL ledgers (mixed into them).

    The table is made on first use, so ledgers made by earlier versions gain it in place.
    """

    #: The backend's DDL for the table (id column, blob type differ).
    _dead_letter_ddl: ClassVar[str]
    _dead_letters_ready = False
    _dead_letters_lock = threading.Lock()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _counts(self, sql: str, param_rows: Iterable[Sequence[Any]]) -> list[int]:
        raise NotImplementedError

    def _insert_once(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run an INSERT ... RETURNING that must not be repeated (not idempotent)."""
        raise NotImplementedError

    def _dead_letter_table(self, *, create: bool = True) -> bool:
        """Make the table if needed; False when it does not exist and cannot be made here
        (a ledger opened read-only, from before dead letters: it has none)."""
        if self._dead_letters_ready:
            return True
        with self._dead_letters_lock:
            try:
                self._rows("SELECT 1 FROM logferry_dead_letters WHERE 1 = 0")
            except Exception:
                if not create:
                    return False
                try:
                    self._rows(self._dead_letter_ddl)
                except Exception:
                    # Two hosts creating it at once: the loser finds it made.
                    self._rows("SELECT 1 FROM logferry_dead_letters WHERE 1 = 0")
            self._dead_letters_ready = True
            return True

    def add_dead_letter(
        self, batch: Batch, etag: str, sink: str, error_class: str, error: str
    ) -> int:
        """Keep ``batch`` (positions ``batch.start``-``batch.end`` of its partition); its id."""
        self._dead_letter_table()
        rows = self._insert_once(
            "INSERT INTO logferry_dead_letters (source, key, etag, start_pos, end_pos, sink, "
            "error_class, error, nbytes, created, records) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                batch.source,
                batch.key,
                etag,
                batch.start,
                batch.end,
                sink,
                error_class,
                error,
                batch.nbytes,
                time.time(),
                pack_records(batch),
            ),
        )
        return int(rows[0][0])

    def dead_letters(
        self, source: str | None = None, ids: Iterable[int] | None = None
    ) -> list[DeadLetter]:
        """Dead letters, newest first, optionally of one source or these ids."""
        if not self._dead_letter_table(create=False):
            return []
        sql = f"SELECT {_COLUMNS} FROM logferry_dead_letters WHERE 1 = 1"
        params: list[Any] = []
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        wanted = None if ids is None else set(ids)
        rows = self._rows(sql + " ORDER BY id DESC", params)
        return [DeadLetter(*row) for row in rows if wanted is None or row[0] in wanted]

    def dead_letter_records(self, letter: DeadLetter) -> Batch | None:
        """The records of ``letter`` as a batch (None once it was removed)."""
        rows = self._rows("SELECT records FROM logferry_dead_letters WHERE id = ?", (letter.id,))
        return unpack_records(letter, bytes(rows[0][0])) if rows else None

    def remove_dead_letters(self, ids: Iterable[int]) -> int:
        """Forget these dead letters (delivered, or purged); how many were removed."""
        ids = list(ids)
        if not ids or not self._dead_letter_table(create=False):
            return 0
        return sum(
            self._counts("DELETE FROM logferry_dead_letters WHERE id = ?", [(i,) for i in ids])
        )
