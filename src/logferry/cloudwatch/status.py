"""Status of a download directory: who is downloading into it, and how far each stream got.

Per stream, the ledger says it all (events acknowledged, the cursor with the last event's
time). Each running download also keeps a small document under ``.logferry/daemons/``
(pid, status port, request counters), rewritten every :data:`HEARTBEAT_SECONDS`: status
calls a download alive while that document is fresh and, on this host, its process runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from logferry.cloudwatch.cursor import StreamCursor
from logferry.cloudwatch.layout import STATE_DIR, stream_relpath
from logferry.errors import ConfigError, LogferryError
from logferry.ledger import SQLiteLedger
from logferry.sources.cloudwatch import split_key

HEARTBEAT_SECONDS = 2.0
LEDGER_FILE = "ledger.db"
#: The ledger source of every stream downloaded into a directory, whatever the prefix (a
#: reload that changes it must not start the streams over).
SOURCE_ID = "cloudwatch://"


def ledger_path(root: Path) -> Path:
    """The download directory's own ledger."""
    return root / STATE_DIR / LEDGER_FILE


def _daemons_dir(root: Path) -> Path:
    return root / STATE_DIR / "daemons"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _alive(doc: dict[str, Any], now_ms: int) -> bool:
    age = (now_ms - int(doc.get("heartbeat_ms", 0))) / 1000
    if age >= 3 * HEARTBEAT_SECONDS + 1:
        return False
    if doc.get("host") not in (None, socket.gethostname()):
        return True  # another host's process: the heartbeat alone says
    try:
        os.kill(int(doc.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def read_daemons(root: Path, now_ms: int) -> list[dict[str, Any]]:
    """Every download's document, newest heartbeat first, each with ``alive`` and its age."""
    docs = []
    for path in _daemons_dir(root).glob("*.json"):
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(doc, dict):
            age = (now_ms - int(doc.get("heartbeat_ms") or doc.get("stopped_ms") or 0)) / 1000
            docs.append({**doc, "alive": _alive(doc, now_ms), "heartbeat_age_s": round(age, 1)})
    return sorted(docs, key=lambda d: -int(d.get("heartbeat_ms") or d.get("stopped_ms") or 0))


def stream_status(root: Path, now_ms: int) -> list[dict[str, Any]]:
    """Every stream the ledger knows: file, its size, events written, last event, lag."""
    path = ledger_path(root)
    if not path.exists():
        return []
    try:
        ledger = SQLiteLedger(path, create=False, readonly=True)
    except ConfigError:
        return []  # being created by a download starting right now
    try:
        entries = ledger.entries(SOURCE_ID)
    finally:
        ledger.close()
    streams: dict[str, dict[str, Any]] = {}
    for e in entries:  # newest first: a stream re-created is shown as it is now
        if e.key in streams:
            continue
        group, stream = split_key(e.key)
        try:
            cursor = StreamCursor.decode(e.cursor)
        except LogferryError:
            cursor = None
        last = cursor.last_ts if cursor is not None else None
        file = stream_relpath(group, stream, as_json=False)
        if not (root / file).exists():
            file = stream_relpath(group, stream, as_json=True)
        try:
            size: int | None = (root / file).stat().st_size
        except FileNotFoundError:
            size = None
        streams[e.key] = {
            "group": group,
            "stream": stream,
            "file": file,
            "file_size": size,
            "events": e.position,
            "last_event_ms": last,
            "lag_s": None if last is None else round((now_ms - last) / 1000, 1),
            "updated_ms": int(e.updated * 1000),
            "status": str(e.status),
        }
    return sorted(streams.values(), key=lambda s: (s["group"], s["stream"]))


def collect_status(root: Path, *, now_ms: int | None = None) -> dict[str, Any]:
    """The directory's status: is a download running, and every stream's progress.

    ``daemon`` is the running download (the freshest, when several share the directory),
    else the last one that ran; ``daemons`` lists every running one.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    docs = read_daemons(root, now)
    running = [d for d in docs if d["alive"]]
    daemon = running[0] if running else (docs[0] if docs else None)
    return {
        "directory": str(root),
        "alive": bool(running),
        "daemon": daemon,
        "daemons": running,
        "streams": stream_status(root, now),
        # State files of an earlier version, moved into the ledger by the next download.
        "earlier_state_files": len(list((root / STATE_DIR / "streams").glob("*.json"))),
    }


class DaemonStatus:
    """This process's document under ``.logferry/daemons/``, and the ``--status-port`` server.

    ``info`` is called for the live counters each time the document is written or served.
    """

    def __init__(self, root: Path, info: Callable[[], dict[str, Any]]) -> None:
        self.root = root
        self.info = info
        self.path = _daemons_dir(root) / f"{socket.gethostname()}-{os.getpid()}.json"
        self.port: int | None = None
        self.started_ms = int(time.time() * 1000)
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None

    def document(self) -> dict[str, Any]:
        """What status shows about this process."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_ms": self.started_ms,
            "heartbeat_ms": int(time.time() * 1000),
            "status_port": self.port,
            **self.info(),
        }

    def start(self, port: int | None) -> None:
        """Clear documents of downloads that are gone, serve ``port``, keep the document fresh."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = int(time.time() * 1000)
        for doc in read_daemons(self.root, now):
            if not doc["alive"]:
                with contextlib.suppress(OSError):
                    (self.path.parent / f"{doc.get('host')}-{doc.get('pid')}.json").unlink()
        if port is not None:
            self._serve(port)
        self._write()
        threading.Thread(target=self._beat, name="cw-status-beat", daemon=True).start()

    def stop(self) -> None:
        """Stop serving; leave a document that says this process stopped."""
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self._write(stopped=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._write()

    def _write(self, stopped: bool = False) -> None:
        doc = self.document()
        if stopped:
            doc["stopped_ms"], doc["heartbeat_ms"] = doc["heartbeat_ms"], 0  # not alive
        with contextlib.suppress(OSError):
            _write_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def _serve(self, port: int) -> None:
        status = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/", "/status"):
                    self.send_error(404, "try /status")
                    return
                doc = collect_status(status.root)
                doc["daemon"] = {**status.document(), "alive": True, "heartbeat_age_s": 0.0}
                doc["alive"] = True
                body = orjson.dumps(doc)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # requests are not news

        try:
            self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ConfigError(f"--status-port {port}: {exc.strerror}") from None
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="cw-status", daemon=True).start()
