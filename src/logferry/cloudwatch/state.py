"""The download directory: file names, per-stream state, the daemon's heartbeat, status.

Layout under ``DIR``::

    GROUP_ENC/STREAM_ENC.HASH.log     one file per (group, stream); .jsonl with --json
    .logferry/streams/HASH.json       that stream's state (cursor, events, file size)
    .logferry/daemon.json             pid, heartbeat, status port, request counters
    .logferry/lock                    held (flock) by the running daemon

``*_ENC`` percent-encode every byte outside ``[A-Za-z0-9_-]`` plus a leading dot, so ``/``
never makes a directory and names stay portable; ``HASH`` is a digest of the exact
(group, stream) pair, so names that differ only in case stay apart on case-insensitive disks.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from logferry.cloudwatch.cursor import StreamCursor

STATE_DIR = ".logferry"
#: The daemon writes its heartbeat this often; status calls it dead after three misses.
HEARTBEAT_SECONDS = 2.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_ENCODED = 120  # keeps GROUP_ENC and STREAM_ENC.HASH.jsonl under common 255-byte limits


def _encode(name: str) -> str:
    encoded = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]  # no hidden files, no '.' or '..'
    return encoded[:_MAX_ENCODED] or "%"


def stream_id(group: str, stream: str) -> str:
    """A short digest of the exact (group, stream) pair: the state file's name."""
    return hashlib.sha256(f"{group}\0{stream}".encode()).hexdigest()[:16]


def stream_relpath(group: str, stream: str, *, as_json: bool) -> str:
    """The data file of (group, stream), relative to the download directory."""
    suffix = "jsonl" if as_json else "log"
    return f"{_encode(group)}/{_encode(stream)}.{stream_id(group, stream)[:10]}.{suffix}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class StreamState:
    """What the daemon has durably written for one stream."""

    group: str
    stream: str
    file: str
    cursor: StreamCursor = field(default_factory=StreamCursor)
    events: int = 0
    size: int = 0
    last_event_ms: int | None = None
    updated_ms: int = 0
    #: The stream's creation time: a stream deleted and re-created under the name starts over.
    created_ms: int = 0

    def to_json(self) -> bytes:
        """Serialise for the state file."""
        data = asdict(self)
        data["cursor"] = asdict(self.cursor)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> StreamState:
        """Parse a state file."""
        data = orjson.loads(raw)
        data["cursor"] = StreamCursor(**data.get("cursor") or {})
        return cls(**data)


class StateStore:
    """The ``.logferry`` folder of a download directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / STATE_DIR
        self.streams_dir = self.dir / "streams"

    def ensure(self) -> None:
        """Create the folders."""
        self.streams_dir.mkdir(parents=True, exist_ok=True)

    def stream_path(self, group: str, stream: str) -> Path:
        """The state file of (group, stream)."""
        return self.streams_dir / f"{stream_id(group, stream)}.json"

    def load(self, group: str, stream: str) -> StreamState | None:
        """The saved state of (group, stream), if any."""
        try:
            return StreamState.from_json(self.stream_path(group, stream).read_bytes())
        except FileNotFoundError:
            return None

    def save(self, state: StreamState) -> None:
        """Replace the state atomically; call only once the data it describes is on disk."""
        state.updated_ms = int(time.time() * 1000)
        write_atomic(self.stream_path(state.group, state.stream), state.to_json())

    def all_states(self) -> list[StreamState]:
        """Every saved stream state (unreadable files are skipped)."""
        states = []
        for path in sorted(self.streams_dir.glob("*.json")):
            try:
                states.append(StreamState.from_json(path.read_bytes()))
            except (OSError, ValueError, TypeError):
                continue
        return states

    def write_daemon(self, info: dict[str, Any]) -> None:
        """Write the daemon's heartbeat document."""
        write_atomic(self.dir / "daemon.json", orjson.dumps(info, option=orjson.OPT_INDENT_2))

    def read_daemon(self) -> dict[str, Any] | None:
        """The last heartbeat document, if any."""
        try:
            data: dict[str, Any] = orjson.loads((self.dir / "daemon.json").read_bytes())
            return data
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def collect_status(root: Path, *, now_ms: int | None = None) -> dict[str, Any]:
    """Status of a download directory: the daemon (alive?) and every stream's progress."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    store = StateStore(root)
    daemon = store.read_daemon()
    alive = False
    if daemon:
        age = (now - int(daemon.get("heartbeat_ms", 0))) / 1000
        alive = age < 3 * HEARTBEAT_SECONDS + 1 and _pid_alive(int(daemon.get("pid", 0)))
        daemon = {**daemon, "heartbeat_age_s": round(age, 1)}
    streams = []
    for st in store.all_states():
        try:
            size = (root / st.file).stat().st_size
        except FileNotFoundError:
            size = None
        streams.append(
            {
                "group": st.group,
                "stream": st.stream,
                "file": st.file,
                "file_size": size,
                "events": st.events,
                "last_event_ms": st.last_event_ms,
                "lag_s": None
                if st.last_event_ms is None
                else round((now - st.last_event_ms) / 1000, 1),
                "updated_ms": st.updated_ms,
            }
        )
    return {"directory": str(root), "alive": alive, "daemon": daemon, "streams": streams}
