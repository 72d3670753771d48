"""Named cursors kept beside the ledger: how far a listing got (``logferry enqueue``).

A backfill that lists a bucket into a work queue resumes after a crash from the last key
whose messages were published, per (queue, source, prefix). The table is made on first use,
so ledgers made by earlier versions gain it in place; its DDL and upsert are the same in
SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

_DDL = (
    "CREATE TABLE IF NOT EXISTS logferry_cursors (name TEXT PRIMARY KEY, "
    "cursor TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL)"
)


class CursorStore:
    """Cursor statements shared by the SQL ledgers (mixed into them)."""

    _cursors_ready = False
    _cursors_lock = threading.Lock()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _counts(self, sql: str, param_rows: Iterable[Sequence[Any]]) -> list[int]:
        raise NotImplementedError

    def _cursor_table(self) -> None:
        if self._cursors_ready:
            return
        with self._cursors_lock:
            try:
                self._rows("SELECT 1 FROM logferry_cursors WHERE 1 = 0")
            except Exception:
                try:
                    self._counts(_DDL, [()])
                except Exception:
                    # Two hosts creating it at once: the loser finds it made.
                    self._rows("SELECT 1 FROM logferry_cursors WHERE 1 = 0")
            self._cursors_ready = True

    def get_cursor(self, name: str) -> str | None:
        """The cursor stored under ``name``, or None."""
        self._cursor_table()
        rows = self._rows("SELECT cursor FROM logferry_cursors WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def set_cursor(self, name: str, cursor: str) -> None:
        """Store ``cursor`` under ``name`` (durably, before returning)."""
        self._cursor_table()
        self._counts(
            "INSERT INTO logferry_cursors (name, cursor, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated = excluded.updated",
            [(name, cursor, time.time())],
        )

    def delete_cursors(self, prefix: str) -> int:
        """Forget every cursor whose name starts with ``prefix``; how many were removed."""
        self._cursor_table()
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return sum(
            self._counts("DELETE FROM logferry_cursors WHERE name LIKE ? ESCAPE '\\'", [(like,)])
        )
