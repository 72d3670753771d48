"""Growing files: ``tail:///var/log/app/*.log`` follows every file matching a glob.

Partitions are files, keyed by path; a partition's version is a **fingerprint** of its
content: the SHA-1 (20 hex digits) of its first line (up to and including the first
``\\n``), or of its first :data:`FINGERPRINT_BYTES` bytes when that line is longer. Appending
never changes it, so the fingerprint identifies a file wherever it is renamed to; a file
with no complete first line yet has none and is not listed until it does. Like Vector's
checksum fingerprint, files that begin with the same line are taken for the same file and
only one of them is read.

- **Cursor**: ``{"offset": N, "fp": FP}``, the byte just after the last complete line handed
  out. ``open`` honours it only when ``fp`` matches the file's fingerprint, so a cursor kept
  for another path (a renamed file) is valid too.
- **Never a partial line**: reads stop at the last ``\\n``; the rest is read again later.
- **Rotation by rename** (``app.log`` → ``app.log.1`` + a new ``app.log``): the open
  partition keeps its file handle, reads the old file to its end, and reports ``finished``
  as soon as the new name is listed (the glob still matches it), or a new file with a first
  line took the path (the writer moved on), or else once the file has not grown for
  ``rotate_wait`` seconds. A new name is listed only after that, and opening it resumes
  where the old partition stopped (nothing lost, nothing read twice). Lines written to the
  old file after its successor got its first line are read only if the glob matches the new
  name.
- **Truncation / copytruncate**: when the file shrinks below the offset, the partition ends
  (``finished``) and the new content is listed as a new version, read from its beginning.
  With copytruncate and a glob matching the copy, the copy resumes at the old offset, so the
  lines written between the last read and the copy are not lost either.
- **Start**: ``start="end"`` skips what files hold when the source first lists them (it
  resumes after their last complete line); files that appear later, and a new file at a path
  whose cursor names another fingerprint, are always read from the beginning.
- **Waiting**: :meth:`TailSource.wait` wakes on inotify events (watchdog) for the glob's
  directory, else polls every ``poll_interval`` seconds. A file created or renamed, one that
  gets its first line, and a rotated file that finished make :meth:`listing_changed` true,
  so the runner lists again at once rather than at its next interval.
"""

from __future__ import annotations

import collections
import fnmatch
import glob
import hashlib
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from logferry.codecs.formats.auto import HEAD_SIZE
from logferry.codecs.stream import StreamDecoder
from logferry.errors import ConfigError, SourceError
from logferry.records import Chunk
from logferry.redact import redact_url
from logferry.registry import Component
from logferry.sources.stream import (
    Cursor,
    PartitionInfo,
    ReadResult,
    StreamPartition,
    StreamSource,
)

#: A first line longer than this is fingerprinted by its first this-many bytes.
FINGERPRINT_BYTES = 1024
#: Bytes read per ``read`` call (a longer line is read in pieces of this size, its head kept).
READ_BYTES = 1 << 20
#: Room for the marker of a capped line (" …[truncated N bytes]"), within the line limit.
_MARKER_ROOM = 48

Start = Literal["beginning", "end"]
_WAKE_EVENTS = frozenset({"modified", "created", "moved", "deleted", "closed"})


def fingerprint(fd: int) -> str | None:
    """Fingerprint of an open file: hash of its first line, capped; None without one yet."""
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    end = head.find(b"\n") + 1
    if end == 0:
        if len(head) < FINGERPRINT_BYTES:
            return None
        end = FINGERPRINT_BYTES
    return hashlib.sha1(head[:end], usedforsecurity=False).hexdigest()[:20]


def _fingerprint_path(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return fingerprint(fd)
    finally:
        os.close(fd)


def _last_line_end(fd: int, size: int) -> int:
    """Offset just after the last ``\\n`` before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


@dataclass(frozen=True, slots=True)
class TailCursor(Cursor):
    """A file's resume point: the byte offset after the last line read, and whose content
    (fingerprint) it counts in."""

    offset: int = 0
    fp: str = ""


@dataclass
class _Seen:
    """What the last listing saw at a path (to fingerprint only new or shrunk files)."""

    dev: int
    ino: int
    size: int
    fp: str | None


@dataclass
class _Shared:
    """One file content (fingerprint) across the paths it is seen under."""

    path: str
    offset: int = 0
    owner: TailPartition | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def live(self) -> bool:
        return self.owner is not None and not self.owner.done


def glob_of(url: str) -> str:
    """The glob of ``tail:///ABS/GLOB`` or ``tail:PATH/GLOB``."""
    if not url.startswith("tail:"):
        raise ConfigError(f"not a tail URL: {redact_url(url)!r} (expected tail:///path/*.log)")
    rest = url[len("tail:") :]
    if rest.startswith("///"):
        path = rest[2:]
    elif rest.startswith("//"):
        raise ConfigError(
            f"tail URL {redact_url(url)!r} names a host; "
            "use tail:///absolute/glob or tail:relative/glob"
        )
    else:
        path = rest
    if not path:
        raise ConfigError(
            f"tail URL {redact_url(url)!r} has no path; e.g. tail:///var/log/app/*.log"
        )
    return path


class TailSource(StreamSource):
    """Files matching a glob, followed as they grow, rotate and get truncated."""

    # A fingerprint names content: the same fingerprint under a new path is a renamed file.
    versions_identify_content = True
    cursor_type = TailCursor
    unit = "files"

    def __init__(
        self,
        pattern: str | Path,
        *,
        start: Start = "beginning",
        poll_interval: float = 0.25,
        rotate_wait: float = 5.0,
        watch: bool = True,
    ) -> None:
        if start not in ("beginning", "end"):
            raise ConfigError(f"start must be 'beginning' or 'end', not {start!r}")
        self.pattern = os.path.abspath(os.path.expanduser(str(pattern)))
        self.start: Start = start
        self.poll_interval = poll_interval
        self.rotate_wait = rotate_wait
        self.id = "tail://" + self.pattern
        self.display = self.id
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._shared: dict[str, _Shared] = {}
        #: Sizes of the files present at the first listing: where ``start="end"`` begins.
        self._startup: dict[tuple[str, str], int] | None = None
        self._watch = watch
        self._observer: Any = None
        self._wake = threading.Event()
        self._relist = threading.Event()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> TailSource:
        """``tail:///ABS/GLOB`` or ``tail:PATH/GLOB`` (relative to the working directory)."""
        return cls(glob_of(url), **options)

    # -- listing -----------------------------------------------------------------------

    def partitions(self) -> list[PartitionInfo]:
        """Files matching the glob that have a fingerprint, one path per fingerprint."""
        found: dict[str, list[tuple[str, os.stat_result]]] = {}
        seen: dict[str, _Seen] = {}
        for path in sorted(glob.glob(self.pattern, recursive=True)):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            old = self._seen.get(path)
            if old and old.fp and (old.dev, old.ino) == (st.st_dev, st.st_ino):
                fp = old.fp if st.st_size >= old.size else _fingerprint_path(path)
            else:
                fp = _fingerprint_path(path)
            seen[path] = _Seen(st.st_dev, st.st_ino, st.st_size, fp)
            if fp is not None:
                found.setdefault(fp, []).append((path, st))
        parts: list[PartitionInfo] = []
        with self._lock:
            self._seen = seen
            for fp in [fp for fp, sh in self._shared.items() if fp not in found and not sh.live()]:
                del self._shared[fp]
            for fp, candidates in found.items():
                sh = self._shared.get(fp)
                paths = [p for p, _ in candidates]
                if sh is not None and sh.path in paths:
                    chosen = sh.path
                elif sh is not None and sh.live():
                    continue  # the open partition still reads this content under its old name
                else:
                    chosen = paths[0]
                st = candidates[paths.index(chosen)][1]
                parts.append(PartitionInfo(chosen, fp, st.st_size, st.st_mtime_ns // 1_000_000))
            if self._startup is None:
                self._startup = {(p.key, p.version): p.size for p in parts}
        parts.sort(key=lambda p: p.key)
        return parts

    def empty_hint(self) -> str:
        """No file to read: say whether the folder is missing or the files have no line yet."""
        root, _ = self._watch_root()
        if not os.path.isdir(root):
            return f"no file matches {self.pattern}: the folder {root} does not exist"
        waiting = [p for p in glob.glob(self.pattern, recursive=True) if os.path.isfile(p)]
        if waiting:
            n = len(waiting)
            return (
                f"{n} file{'' if n == 1 else 's'} match{'es' if n == 1 else ''} {self.pattern}, "
                "none with a complete first line yet: a file is read once its first line ends"
            )
        return f"no file matches {self.pattern}"

    # -- reading -----------------------------------------------------------------------

    def open(
        self,
        part: PartitionInfo,
        cursor: Cursor | None,
        position: int,
        decoder: StreamDecoder | None = None,
    ) -> TailPartition:
        """Open the file to resume after ``cursor`` (honoured when its fingerprint matches).

        A cursor saved under another path with the same fingerprint (a renamed file) is
        valid; one naming another fingerprint means a new file took the path: read it all.
        """
        path, fp = part.key, part.version
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return TailPartition(self, path, fp, -1, 0, None, decoder)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        if fingerprint(fd) != fp:  # replaced since listed: this version is gone
            os.close(fd)
            return TailPartition(self, path, fp, -1, 0, None, decoder)
        size = os.fstat(fd).st_size
        with self._lock:
            sh = self._shared.setdefault(fp, _Shared(path))
            startup = (self._startup or {}).get((path, fp))
        with sh.lock:
            if sh.path != path and (sh.owner is None or not sh.owner.closed_early):
                offset = sh.offset  # renamed (or copied, then truncated): carry on
            elif isinstance(cursor, TailCursor):
                offset = cursor.offset if cursor.fp == fp and cursor.offset <= size else 0
            elif self.start == "end" and startup is not None:
                offset = _last_line_end(fd, min(startup, size))
            else:
                offset = 0
            if sh.owner is not None:
                sh.owner.superseded = True
            partition = TailPartition(self, path, fp, fd, offset, TailCursor(offset, fp), decoder)
            sh.path, sh.offset, sh.owner = path, offset, partition
        return partition

    def _shared_for(self, fp: str) -> _Shared | None:
        with self._lock:
            return self._shared.get(fp)

    def _listed_elsewhere(self, fp: str, path: str) -> bool:
        with self._lock:
            return any(s.fp == fp and p != path for p, s in self._seen.items())

    # -- waiting -----------------------------------------------------------------------

    def listing_changed(self) -> bool:
        """True (once) after a matching file was created, renamed or got its first line."""
        if not self._relist.is_set():
            return False
        self._relist.clear()
        return True

    def _relist_soon(self) -> None:
        self._relist.set()
        self._wake.set()

    def _event(self, kind: str, path: str) -> None:
        """A watchdog event on a matching path: wake the reader, relist when it may be new."""
        # A modification counts when the path had no fingerprint at the last listing (an
        # empty file that just got its first line). ``_seen`` is replaced whole, never
        # mutated, so reading it without the lock is safe.
        seen = self._seen.get(path)
        if kind in ("created", "moved", "deleted") or seen is None or seen.fp is None:
            self._relist.set()
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Block until a matching file changes (inotify) or ``timeout``; poll without it."""
        if self._watch and self._observer is None:
            self._start_observer()
        if self._observer is None:
            time.sleep(max(0.0, min(timeout, self.poll_interval)))
            return
        self._wake.wait(timeout)
        self._wake.clear()

    def _watch_root(self) -> tuple[str, bool]:
        parts = Path(self.pattern).parts
        for i, part in enumerate(parts):
            if any(c in part for c in "*?["):
                return str(Path(*parts[:i])), i < len(parts) - 1
        return str(Path(self.pattern).parent), False

    def _start_observer(self) -> None:
        root, recursive = self._watch_root()
        if not os.path.isdir(root):
            return  # poll until the directory exists
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            self._watch = False
            return
        pattern, on_event = self.pattern, self._event

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in _WAKE_EVENTS or event.is_directory:
                    return
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    path = os.fsdecode(p) if p else ""
                    if path and fnmatch.fnmatchcase(path, pattern):
                        on_event(event.event_type, path)
                        return

        observer = Observer()
        try:
            observer.schedule(_Handler(), root, recursive=recursive)
            observer.start()
        except OSError:  # no inotify (limits reached, unsupported platform): poll
            self._watch = False
            return
        self._observer = observer

    def close(self) -> None:
        """Stop watching."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None


class TailPartition(StreamPartition):
    """One open file; reads complete lines from the offset on."""

    def __init__(
        self,
        source: TailSource,
        path: str,
        fp: str,
        fd: int,
        offset: int,
        cursor: TailCursor | None,
        decoder: StreamDecoder | None = None,
    ) -> None:
        self.source = source
        self.path = path
        self.fp = fp
        self.offset = offset
        self.cursor = cursor
        self.decoder = decoder or StreamDecoder("lines")
        #: True once the partition reported ``finished`` (or was taken over).
        self.done = fd < 0
        #: Set when another partition took this content over (the file was renamed).
        self.superseded = False
        #: Closed before finishing: its offset may be ahead of what was acknowledged.
        self.closed_early = False
        self._fd = fd
        self._rotated_at: float | None = None
        #: Seen shrunk below the offset, with no first line yet to tell what it now holds.
        self._truncated = False
        self._last_growth = time.monotonic()
        self._last_size = -1

    @property
    def counters(self) -> collections.Counter[str]:
        """Format counters of this file (lines shipped raw, ...)."""
        return self.decoder.counters

    def _finished(self) -> ReadResult:
        self.done = True
        return ReadResult(Chunk([], []), self.cursor, caught_up=True, finished=True)

    def read(self, max_records: int) -> ReadResult:
        """Return complete lines after the offset (at most ``max_records`` of them)."""
        if self.done:
            return self._finished()
        sh = self.source._shared_for(self.fp)
        if sh is None:
            return self._finished()
        with sh.lock:
            if self.superseded:
                return self._finished()
            result = self._read(max(1, max_records))
            sh.offset = self.offset
            if result.finished:
                self.done = True
            return result

    def _read(self, max_records: int) -> ReadResult:
        st = os.fstat(self._fd)
        size = st.st_size
        now = time.monotonic()
        if (
            self._truncated
            or size < self.offset
            or (size > self.offset and fingerprint(self._fd) != self.fp)
        ):
            # Truncated or rewritten in place. The same first line again: go on from the
            # start as the same version; another one: the new content is a new version.
            new_fp = fingerprint(self._fd)
            if new_fp is None:  # no first line yet: wait to tell which it is
                self._truncated = True
                if self.source._listed_elsewhere(self.fp, self.path) or (
                    self._rotated(now) and now - self._last_growth >= self.source.rotate_wait
                ):
                    return self._finished()  # a copy (copytruncate) carries on, or it is gone
                return ReadResult(Chunk([], []), self.cursor, caught_up=True)
            if new_fp != self.fp:
                return self._finished()
            self.offset, self._truncated = 0, False
        if size != self._last_size:
            self._last_size, self._last_growth = size, now
        data, cut, span = self._complete_lines(size)
        if cut < 0:
            # No complete line ahead. A file renamed away (or deleted) is over once another
            # listed path carries it on, once a new file with a first line took its path (the
            # writer moved on), or once it stopped growing for rotate_wait: then ship its
            # unterminated last line, unless another listed path holds it.
            if self._rotated(now):
                elsewhere = self.source._listed_elsewhere(self.fp, self.path)
                if (
                    elsewhere
                    or self._replaced()
                    or now - self._last_growth >= self.source.rotate_wait
                ):
                    self.source._relist_soon()  # the path (or the new name) is to be taken
                    if data and not elsewhere:
                        self.offset += span
                        if span > len(data):
                            self.counters["truncated_lines"] += 1
                        chunk = self._decode(data, st.st_mtime_ns)
                        self.cursor = TailCursor(self.offset, self.fp)
                        return ReadResult(chunk, self.cursor, caught_up=True, finished=True)
                    return self._finished()
            return ReadResult(Chunk([], []), self.cursor, caught_up=True)
        end = _nth_line_end(data, cut, max_records)
        self.offset += span if end == cut else end  # a capped line stands for more bytes
        chunk = self._decode(data[:end], st.st_mtime_ns)
        self.cursor = TailCursor(self.offset, self.fp)
        caught_up = self.offset >= size or (
            span == cut and data.find(b"\n", end) < 0 and len(data) < READ_BYTES
        )
        return ReadResult(chunk, self.cursor, caught_up=caught_up)

    def _complete_lines(self, size: int) -> tuple[bytes, int, int]:
        """Bytes from the offset, the end of the last complete line in them (-1: none), and
        how many bytes of the file they stand for (``data[:cut]``'s, or all data's if -1).

        A line longer than READ_BYTES comes alone. Past the decoder's ``max_line_bytes`` it
        keeps its head and a marker (within the limit, so framing leaves it as it is), the
        rest is read past, never held, and a complete one counts in ``truncated_lines``.
        """
        data = os.pread(self._fd, min(READ_BYTES, size - self.offset), self.offset)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return data, cut + 1, cut + 1
        if len(data) < READ_BYTES:
            return data, -1, len(data)
        limit = self.decoder.options.max_line_bytes
        head = [data[:limit]]
        kept = len(head[0])
        have = len(data)  # bytes of the line so far
        ended = False
        while not ended:
            more = os.pread(self._fd, READ_BYTES, self.offset + have)
            if not more:
                break
            nl = more.find(b"\n")
            ended = nl >= 0
            piece = more[:nl] if ended else more
            if kept < limit:
                head.append(piece[: limit - kept])
                kept += len(head[-1])
            have += len(piece)
        line = b"".join(head)
        if have > limit:
            line = line[: max(limit - _MARKER_ROOM, 0)]
            line += f" …[truncated {have - len(line)} bytes]".encode()
            if ended:
                self.counters["truncated_lines"] += 1
        if ended:
            return line + b"\n", len(line) + 1, have + 1
        return line, -1, have

    def _rotated(self, now: float) -> bool:
        """True once the path no longer names this file (renamed away or deleted)."""
        if self._rotated_at is None:
            try:
                st = os.stat(self.path)
                fst = os.fstat(self._fd)
                if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
                    return False
            except FileNotFoundError:
                pass
            self._rotated_at = now
            self._last_growth = max(self._last_growth, now)
        return True

    def _replaced(self) -> bool:
        """True when the path holds another file that has a first line of its own."""
        fp = _fingerprint_path(self.path)
        return fp is not None and fp != self.fp

    def _decode(self, data: bytes, mtime_ns: int) -> Chunk:
        fd = self._fd
        return self.decoder.decode(
            data, self.path, mtime_ns // 1_000_000, head=lambda: os.pread(fd, HEAD_SIZE, 0)
        )

    def bytes_behind(self) -> int | None:
        """The file's size less what was read."""
        if self._fd < 0:
            return 0
        try:
            return max(0, os.fstat(self._fd).st_size - self.offset)
        except OSError:
            return None

    def close(self) -> None:
        """Close the file."""
        if not self.done:
            self.closed_early = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.done = True


def _nth_line_end(data: bytes, cut: int, n: int) -> int:
    """End of the ``n``-th line of ``data`` if it comes before ``cut``, else ``cut``."""
    if data.count(b"\n", 0, cut) <= n:
        return cut
    pos = 0
    for _ in range(n):
        pos = data.index(b"\n", pos) + 1
    return pos


class TailOptions(BaseModel):
    """Where new files start (each route's format decodes their lines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Start = "beginning"


def _check(url: str, options: TailOptions) -> None:
    glob_of(url)


def _open(url: str, options: TailOptions) -> TailSource:
    return TailSource(glob_of(url), start=options.start)


COMPONENT = Component(
    name="tail",
    kind="stream",
    schemes=("tail",),
    options=TailOptions,
    check=_check,
    open=_open,
    usage="tail:///GLOB",
    summary="local files matching a glob, followed as they grow and rotate",
)
