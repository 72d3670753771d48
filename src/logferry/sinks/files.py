"""Local file sinks: one JSONL file per source object, written atomically.

Each object's records go to a hidden ``.NAME.partial`` file that is renamed to
its final name when the object is complete. Re-sending an object therefore
replaces its file instead of appending duplicates, and a resume after a crash
truncates the partial file back to the acknowledged position first: the file
sink is exactly-once on replay. An object that fails before any record was written leaves
no partial file behind. Keys map to readable, unique names (see :func:`safe_relpath`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import unicodedata
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

import orjson

from logferry.codecs.timestamps import format_iso
from logferry.errors import ConfigError, FatalSinkError
from logferry.records import Batch, ObjectInfo
from logferry.redact import redact_url
from logferry.registry import Component, NoOptions
from logferry.sinks.base import Sink

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,@-]")
_POSITION = re.compile(rb'\{"position":(\d+),')

# Byte values a ``%XX`` in an output name stands for. Any other ``%XX`` (IBM's ``crn%3Av1``,
# ``%2F``, ``%20``) is the key's own text, kept as is: keys are not encoded twice.
_ESCAPABLE = frozenset(range(0x20)) | {0x25, 0x2E, 0x7E, 0x7F} | frozenset(range(0x80, 0x100))
_HEX = frozenset("0123456789ABCDEF")
# Unicode categories escaped: controls, invisible formatting (bidi overrides), line
# separators and undecodable bytes, so that a name never moves or hides text in a terminal.
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))
# A part longer than this (in bytes) is shortened: its name, a version tag, the suffix
# and ``.partial`` must fit in NAME_MAX (255 bytes on Linux and macOS).
MAX_PART_BYTES = 200
_HASH_CHARS = 16
# A directory part never ends like a file the sink writes, so a key ``a`` (``a.jsonl``)
# and a key ``a.jsonl/b`` (``a%2Ejsonl/b.jsonl``) never clash.
_FILE_ENDINGS = (".jsonl", ".log", ".partial")
EMPTY_PART = "~empty"
ROOT = "~root"


def _escape(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def _percent_reads_as_escape(part: str, i: int) -> bool:
    """Whether the ``%`` at ``part[i]`` followed by two characters reads as one of our escapes."""
    pair = part[i + 1 : i + 3]
    return len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX and int(pair, 16) in _ESCAPABLE


def _tokens(part: str) -> list[str]:
    """The part as output tokens: each character as is, or escaped as ``%XX`` bytes."""
    out = []
    for i, ch in enumerate(part):
        if ch == "%":
            out.append("%25" if _percent_reads_as_escape(part, i) else "%")
        elif ch == "~" or unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            out.append(_escape(ch))
        else:
            out.append(ch)
    return out


def _digest(part: str) -> str:
    return hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]


def _round_trips(part: str) -> bool:
    """Whether the part is what decoding its bytes (with surrogateescape) gives back."""
    try:
        raw = part.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return raw.decode("utf-8", "surrogateescape") == part


@functools.lru_cache(maxsize=4096)
def encode_part(part: str, *, directory: bool = False) -> str:
    """One ``/``-separated key part as one file name component (see :func:`safe_relpath`)."""
    if part == "":
        return EMPTY_PART
    if not _round_trips(part):
        return "~" + _digest(part)  # not text from bytes (a stray surrogate): no readable form
    if part in (".", ".."):
        return part.replace(".", "%2E")
    tokens = _tokens(part)
    if directory and part.endswith(_FILE_ENDINGS):
        dot = part.rindex(".")
        tokens[dot] = "%2E"  # characters of an ending are never escaped: one token each
    name = "".join(tokens)
    if len(name.encode("utf-8", "surrogateescape")) <= MAX_PART_BYTES:
        return name
    budget, size, keep = MAX_PART_BYTES - 1 - _HASH_CHARS, 0, []
    for token in tokens:  # cut between tokens: never inside an escape or a character
        size += len(token.encode("utf-8", "surrogateescape"))
        if size > budget:
            break
        keep.append(token)
    return "".join(keep) + "~" + _digest(part)


def safe_relpath(key: str, *, drop_root: bool = False) -> str:
    """Map an object key to a readable relative path that never leaves the directory.

    Each ``/``-separated part becomes one path component, unchanged when it is plain text
    (``app/2026/x.log`` stays ``app/2026/x.log``). Escaped as ``%XX`` (UTF-8 bytes):
    control and invisible characters, ``~``, the dots of ``.`` and ``..``, the dot before a
    directory part's ``.jsonl``/``.log``/``.partial`` ending, and a ``%`` only where it
    would read as one of these escapes. ``~`` marks what logferry adds: ``~empty`` for an
    empty part, ``~root`` for the leading ``/`` of an absolute key (dropped instead with
    ``drop_root``), and ``~`` plus 16 hex digits of SHA-256 ending a part shortened to
    fit a file name. Two keys map to one path only if two long parts share a hash prefix.
    """
    parts = key.split("/")
    head: list[str] = []
    if key.startswith("/"):
        parts = parts[1:]
        head = [] if drop_root else [ROOT]
    last = len(parts) - 1
    return "/".join(head + [encode_part(p, directory=i < last) for i, p in enumerate(parts)])


def encode_jsonl(batch: Batch, with_key: bool = False, with_position: bool = False) -> bytes:
    """Records as JSON lines: ``{"timestamp": ISO-8601 UTC, "line": ...}``.

    ``with_position`` puts the record's position first (stream files are cut back by it).
    """
    ts = batch.timestamps
    if with_position:
        start = batch.start
        rows = [
            orjson.dumps({"position": start + i, "timestamp": format_iso(ts[i]), "line": line})
            for i, line in enumerate(batch.lines)
        ]
    elif with_key:
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
        self._streams: set[tuple[str, str]] = set()
        self._stream_end: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def path_for(self, key: str) -> Path:
        """Final path of an object's output file."""
        return self.dir / (safe_relpath(key) + self.suffix)

    def _partial(self, key: str) -> Path:
        final = self.path_for(key)
        return final.with_name("." + final.name + ".partial")

    def open(self, source: str, obj: ObjectInfo, resume_at: int, *, stream: bool = False) -> None:
        """Start (or resume) the object's partial file at ``resume_at`` records.

        A stream partition is written in place (people tail it) with each record's position,
        and a resume cuts the file back to the records before ``resume_at``.
        """
        if stream:
            self._open_stream(source, obj, resume_at)
            return
        partial = self._partial(obj.key)
        final = self.path_for(obj.key)
        with self._lock:  # an abort of another object may be pruning the same directories
            partial.parent.mkdir(parents=True, exist_ok=True)
            if resume_at and not partial.exists() and final.exists():
                # Crashed between the rename and the ledger's "done": carry on from the final.
                os.replace(final, partial)
            try:
                f: IO[bytes] = partial.open("r+b" if resume_at else "wb")
            except FileNotFoundError:
                missing = True
            else:
                missing = False
        if missing:
            self._remove_empty(partial)  # the directories made above
            raise FatalSinkError(
                f"{partial} is missing but {resume_at} records were acknowledged; "
                "re-ship the object with --all"
            )
        if resume_at:
            keep = self._offset_after_lines(f, resume_at)
            if keep is None:
                f.close()
                raise FatalSinkError(
                    f"{partial} holds fewer than the {resume_at} acknowledged records; "
                    "re-ship the object with --all"
                )
            f.truncate(keep)
            f.seek(keep)
        with self._lock:
            old = self._open.pop((source, obj.key), None)
            if old:
                old.close()
            self._open[(source, obj.key)] = f

    def stream_path_for(self, key: str, version: str) -> Path:
        """Where a stream partition goes: one file per content version (a rotated file's
        successor under the same name gets its own output file, never overwriting).

        An absolute key (a tailed file, a CloudWatch group) loses its leading ``/``:
        ``/var/log/app.log`` goes to ``DIR/var/log/app.log~VERSION.jsonl``.
        """
        tag = _UNSAFE.sub("_", version)[:16] or "0"
        return self.dir / f"{safe_relpath(key, drop_root=True)}~{tag}{self.suffix}"

    def _open_stream(self, source: str, obj: ObjectInfo, resume_at: int) -> None:
        path = self.stream_path_for(obj.key, obj.etag)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = path.open("a+b")
        f.seek(0)
        keep = self.stream_offset(f, resume_at)
        f.truncate(keep)
        f.seek(keep)
        with self._lock:
            old = self._open.pop((source, obj.key), None)
            if old:
                old.close()
            self._open[(source, obj.key)] = f
            self._streams.add((source, obj.key))
            self._stream_end[(source, obj.key)] = resume_at

    def encode_stream(self, batch: Batch) -> bytes:
        """A stream partition's records as written to its file (each with its position)."""
        return encode_jsonl(batch, with_position=True)

    def stream_offset(self, f: IO[bytes], position: int) -> int:
        """Where a stream file is cut back to keep only the records before ``position``."""
        return self._offset_before_position(f, position)

    @staticmethod
    def _offset_before_position(f: IO[bytes], position: int) -> int:
        """Offset of the first record at or after ``position`` (or of a torn last line)."""
        offset = 0
        carry = b""
        while block := f.read(1 << 20):
            data = carry + block
            start = 0
            while (nl := data.find(b"\n", start)) >= 0:
                m = _POSITION.match(data, start)
                if m is not None and int(m.group(1)) >= position:
                    return offset + start
                start = nl + 1
            carry = data[start:]
            offset += start
        return offset  # everything before a torn (unterminated) last line is kept

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
        if (batch.source, batch.key) in self._streams:
            data = self.encode_stream(batch)
            f = self._open.get((batch.source, batch.key))
            end = self._stream_end.get((batch.source, batch.key), 0)
            if f is not None and batch.start < end:
                # The same records again (a retry after another sink failed): replace, so
                # the file stays exactly-once within a run too.
                f.seek(0)
                keep = self.stream_offset(f, batch.start)
                f.truncate(keep)
                f.seek(keep)
            self._stream_end[(batch.source, batch.key)] = batch.end
        else:
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
            streamed = (source, obj.key) in self._streams
            self._streams.discard((source, obj.key))
        if f is None:
            return
        os.fsync(f.fileno())
        f.close()
        if not streamed:
            os.replace(self._partial(obj.key), self.path_for(obj.key))

    def settle(self, source: str, obj: ObjectInfo, position: int) -> None:
        """Cut a stream file back to the records before ``position`` (a torn line too)."""
        path = self.stream_path_for(obj.key, obj.etag)
        with self._lock:
            if any(Path(f.name) == path for f in self._open.values()):
                return  # being written right now: its own resume already cut it
        try:
            f = path.open("r+b")
        except FileNotFoundError:
            return
        with f:
            f.truncate(self.stream_offset(f, position))

    def abort(self, source: str, obj: ObjectInfo) -> None:
        """Close the partial file: it stays for a resume if it holds records, else it goes."""
        with self._lock:
            f = self._open.pop((source, obj.key), None)
            streamed = (source, obj.key) in self._streams
            self._streams.discard((source, obj.key))
        if f is None:
            return
        f.close()
        if not streamed:
            self._remove_empty(self._partial(obj.key))

    def _remove_empty(self, partial: Path) -> None:
        """Remove an empty partial file and the directories left empty by it.

        Nothing in it means nothing acknowledged: a retry starts the object afresh anyway.
        """
        with self._lock:
            try:
                if partial.stat().st_size:
                    return
                partial.unlink()
            except FileNotFoundError:
                pass
            parent = partial.parent
            while parent != self.dir and self.dir in parent.parents:
                try:
                    parent.rmdir()
                except OSError:  # not empty (or gone): stop there
                    break
                parent = parent.parent

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


def directory_of(url: str) -> str:
    """The directory of ``file:///DIR`` or of a plain path."""
    if not url.lower().startswith("file:"):
        return url
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise ConfigError(f"bad file sink {redact_url(url)!r}: use file:///ABSOLUTE/DIR")
    return unquote(parts.path)


def _check(url: str, options: NoOptions) -> None:
    directory_of(url)


def _open(url: str, options: NoOptions, *, stop: threading.Event | None = None) -> FileSink:
    return FileSink(directory_of(url))


COMPONENT = Component(
    name="file",
    kind="sink",
    schemes=("file", ""),
    options=NoOptions,
    check=_check,
    open=_open,
    usage="file:///DIR, a directory path",
    summary="one JSON-lines file per object or partition under a directory",
)
