"""Local file sinks: one JSONL file per source object, written atomically.

Each object's records go to a hidden ``.NAME.partial`` file that is renamed to
its final name when the object is complete. Re-sending an object therefore
replaces its file instead of appending duplicates, and a resume after a crash
truncates the partial file back to the acknowledged position first: the file
sink is exactly-once on replay.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import IO

import orjson

from logferry.codecs.timestamps import format_iso
from logferry.errors import ConfigError, FatalSinkError
from logferry.records import Batch, ObjectInfo
from logferry.sinks.base import Sink

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,@-]")


def safe_relpath(key: str) -> str:
    """Map an object key to a relative path, injectively and without escaping the directory.

    Each '/'-separated part keeps safe characters and percent-encodes the rest,
    ``%`` included, so two different keys never map to the same path; ``.``/``..``
    and empty parts are encoded too.
    """
    parts = []
    for part in key.split("/"):
        if part in ("", ".", ".."):
            parts.append("%" + part.replace(".", "%2E"))
            continue
        parts.append(_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), part))
    return "/".join(parts)


def encode_jsonl(batch: Batch, with_key: bool = False) -> bytes:
    """Records as JSON lines: ``{"timestamp": ISO-8601 UTC, "line": ...}``."""
    ts = batch.timestamps
    if with_key:
        key = batch.key
        rows = [
            orjson.dumps({"timestamp": format_iso(ts[i]), "key": key, "line": line})
            for i, line in enumerate(batch.lines)
        ]
    else:
        rows = [
            orjson.dumps({"timestamp": format_iso(ts[i]), "line": line})
            for i, line in enumerate(batch.lines)
        ]
    rows.append(b"")
    return b"\n".join(rows)


def encode_raw(batch: Batch) -> bytes:
    """Records as plain text, one shipped line per line."""
    return ("\n".join(batch.lines) + "\n").encode("utf-8", "surrogateescape")


class FileSink(Sink):
    """Write each object to ``DIR/<key>.jsonl`` (or ``.log`` with ``raw=True``)."""

    def __init__(self, directory: str | Path, *, raw: bool = False) -> None:
        self.dir = Path(directory).expanduser().resolve()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create output directory {self.dir}: {exc.strerror}"
            ) from None
        self.raw = raw
        self.suffix = ".log" if raw else ".jsonl"
        self.name = self.dir.as_uri()
        self._open: dict[tuple[str, str], IO[bytes]] = {}
        self._lock = threading.Lock()

    def path_for(self, key: str) -> Path:
        """Final path of an object's output file."""
        return self.dir / (safe_relpath(key) + self.suffix)

    def _partial(self, key: str) -> Path:
        final = self.path_for(key)
        return final.with_name("." + final.name + ".partial")

    def open(self, source: str, obj: ObjectInfo, resume_at: int) -> None:
        """Start (or resume) the object's partial file at ``resume_at`` records."""
        partial = self._partial(obj.key)
        partial.parent.mkdir(parents=True, exist_ok=True)
        final = self.path_for(obj.key)
        if resume_at and not partial.exists() and final.exists():
            # Crashed between the rename and the ledger's "done": carry on from the final file.
            os.replace(final, partial)
        f: IO[bytes]
        if resume_at and partial.exists():
            f = partial.open("r+b")
            keep = self._offset_after_lines(f, resume_at)
            if keep is None:
                f.close()
                raise FatalSinkError(
                    f"{partial} holds fewer than the {resume_at} acknowledged records; "
                    "re-ship the object with --all"
                )
            f.truncate(keep)
            f.seek(keep)
        elif resume_at:
            raise FatalSinkError(
                f"{partial} is missing but {resume_at} records were acknowledged; "
                "re-ship the object with --all"
            )
        else:
            f = partial.open("wb")
        with self._lock:
            old = self._open.pop((source, obj.key), None)
            if old:
                old.close()
            self._open[(source, obj.key)] = f

    @staticmethod
    def _offset_after_lines(f: IO[bytes], n: int) -> int | None:
        """Byte offset just after the n-th newline, or None if the file has fewer lines."""
        offset = 0
        while n:
            block = f.read(1 << 20)
            if not block:
                return None
            pos = -1
            while n:
                pos = block.find(b"\n", pos + 1)
                if pos < 0:
                    break
                n -= 1
            if n == 0:
                return offset + pos + 1
            offset += len(block)
        return offset

    def write(self, batch: Batch) -> None:
        """Append the batch and flush it to the OS (survives kill -9)."""
        data = encode_raw(batch) if self.raw else encode_jsonl(batch)
        f = self._open.get((batch.source, batch.key))
        if f is None:
            raise RuntimeError(f"file sink: {batch.key} written before open()")
        f.write(data)
        f.flush()

    def commit(self, source: str, obj: ObjectInfo) -> None:
        """fsync and rename the partial file into place."""
        with self._lock:
            f = self._open.pop((source, obj.key), None)
        if f is None:
            return
        os.fsync(f.fileno())
        f.close()
        os.replace(self._partial(obj.key), self.path_for(obj.key))

    def abort(self, source: str, obj: ObjectInfo) -> None:
        """Close the partial file; it stays for a resume."""
        with self._lock:
            f = self._open.pop((source, obj.key), None)
        if f is not None:
            f.close()

    def close(self) -> None:
        """Close anything still open (partials stay for a resume)."""
        with self._lock:
            for f in self._open.values():
                f.close()
            self._open.clear()


class ConcatSink(Sink):
    """Append every object's shipped lines to one text file (``pull --concat``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = self.path.as_uri()
        self._f = self.path.open("wb")
        self._lock = threading.Lock()

    def write(self, batch: Batch) -> None:
        """Append the lines."""
        data = encode_raw(batch)
        with self._lock:
            self._f.write(data)
            self._f.flush()

    def close(self) -> None:
        """Close the file."""
        self._f.close()
