"""Upgrading a download directory of an earlier version: its state files into the ledger.

Earlier versions kept each stream's progress in ``.logferry/streams/HASH.json`` (forward
token, events written, file size) and held ``.logferry/lock`` while running. Each state file
becomes the stream's ledger row, once: position = the events written (one line each, so the
file sink cuts the file back to them), cursor = the saved one. The file is then renamed
``HASH.json.migrated``; a row that already has progress is never overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable
from pathlib import Path

import orjson

from logferry.cloudwatch.cursor import StreamCursor
from logferry.cloudwatch.layout import STATE_DIR
from logferry.cloudwatch.status import SOURCE_ID
from logferry.errors import LogferryError
from logferry.ledger import ClaimLostError, Ledger
from logferry.ledger.base import new_owner_id
from logferry.records import ObjectInfo
from logferry.sources.cloudwatch import partition_key

_LEASE = 60.0


def refuse_earlier_daemon(root: Path) -> None:
    """Fail if a download of an earlier version (which held ``.logferry/lock``) still runs."""
    path = root / STATE_DIR / "lock"
    if not path.exists():
        return
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LogferryError(
                f"a download of an earlier logferry version is writing {root}: stop it first"
            ) from None
    path.unlink(missing_ok=True)


def migrate_state_files(root: Path, ledger: Ledger, notice: Callable[[str], None]) -> int:
    """Move every old state file's progress into ``ledger``; return how many moved."""
    folder = root / STATE_DIR / "streams"
    if not folder.is_dir():
        return 0
    owner = new_owner_id()
    moved = 0
    for path in sorted(folder.glob("*.json")):
        try:
            state = orjson.loads(path.read_bytes())
            key = partition_key(state["group"], state["stream"])
            cursor = StreamCursor(**(state.get("cursor") or {}))
            events, size = int(state.get("events", 0)), int(state.get("size", 0))
            version = str(int(state.get("created_ms") or 0))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            notice(f"{path}: unreadable state file, left as it is ({type(exc).__name__})")
            continue
        claim = ledger.claim(SOURCE_ID, ObjectInfo(key, size, version, 0), owner, _LEASE)
        if claim is None:
            continue  # a running download has it (and so has its own row already)
        try:
            if claim.position == 0 and claim.cursor is None:
                ledger.checkpoint(claim, events, size, _LEASE, cursor.encode())
        finally:
            with contextlib.suppress(ClaimLostError):
                ledger.release(claim)
        path.rename(path.with_name(path.name + ".migrated"))
        moved += 1
    if moved:
        notice(f"moved the state of {moved} streams from {folder} into the ledger")
    return moved
