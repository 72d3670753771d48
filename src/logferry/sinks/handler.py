"""User handlers as sinks: ``type: python``, ``handler: package.module:Class``.

The class implements ``setup(args)``, ``recv(meta, record)`` and ``result()``::

    class CountActions:
        def setup(self, args):
            self.counts = {}
        def recv(self, meta, record):
            action = record.get("action") if isinstance(record, dict) else None
            self.counts[action] = self.counts.get(action, 0) + 1
        def result(self):
            return self.counts

``record`` is the parsed JSON object when the shipped line is one, else the line (str).
``meta`` holds ``source``, ``bucket``, ``key``, ``format``, ``timestamp`` (ISO-8601 UTC),
``timestamp_ms`` and ``position``. Calls are serialized, so handlers need no locking. An
exception in ``recv`` fails that object (ledger and error queue), not the run.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from logferry.codecs.timestamps import format_iso
from logferry.errors import ConfigError, FatalSinkError
from logferry.records import Batch
from logferry.sinks.base import Sink

#: sys.path is process-wide: one handler import changes it at a time.
_HANDLER_IMPORT = threading.Lock()


def load_handler(spec: str, base_dir: str | Path | None = None) -> type:
    """Import ``package.module:Class``; a ConfigError says what is missing.

    With ``base_dir`` (the pipeline file's folder), modules there are found first: the folder
    leads the import path for this import only.
    """
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"handler {spec!r}: use package.module:Class")
    folder = str(Path(base_dir)) if base_dir is not None else None
    with _HANDLER_IMPORT:
        if folder is not None:
            sys.path.insert(0, folder)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            where = f" (looked in {folder} and the Python path)" if folder else ""
            raise ConfigError(
                f"handler {spec!r}: cannot import {module_name}: {exc}{where}"
            ) from None
        finally:
            if folder is not None:
                with contextlib.suppress(ValueError):
                    sys.path.remove(folder)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"handler {spec!r}: {module_name} has no class {class_name}")
    if not callable(getattr(cls, "recv", None)):
        raise ConfigError(f"handler {spec!r}: {class_name} has no recv(meta, record) method")
    return cls


class HandlerSink(Sink):
    """Feeds every record to a user handler object."""

    def __init__(
        self,
        name: str,
        spec: str,
        args: dict[str, Any] | None = None,
        *,
        base_dir: str | Path | None = None,
    ) -> None:
        self.name = f"python:{spec}"
        self.label = name
        self.spec = spec
        cls = load_handler(spec, base_dir)
        try:
            self.handler = cls()
            setup = getattr(self.handler, "setup", None)
            if callable(setup):
                setup(dict(args or {}))
        except Exception as exc:
            raise ConfigError(
                f"handler {spec}: setup failed: {type(exc).__name__}: {exc}"
            ) from None
        self._lock = threading.Lock()
        self._records = 0

    def write(self, batch: Batch) -> None:
        """Call ``recv`` for each record; an exception fails the object."""
        parts = urlsplit(batch.source)
        bucket = parts.netloc or parts.path
        base = {"source": batch.source, "bucket": bucket, "key": batch.key, "format": batch.format}
        recv = self.handler.recv
        with self._lock:
            for i, line in enumerate(batch.lines):
                ts = batch.timestamps[i]
                record: Any = line
                if line[:1] == "{":
                    with contextlib.suppress(orjson.JSONDecodeError):
                        record = orjson.loads(line)
                meta = {**base, "timestamp": format_iso(ts), "timestamp_ms": ts,
                        "position": batch.start + i}  # fmt: skip
                try:
                    recv(meta, record)
                except Exception as exc:
                    raise FatalSinkError(
                        f"handler {self.spec} failed at record {batch.start + i}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                self._records += 1

    def counters(self) -> dict[str, int]:
        """Records handed to the handler."""
        return {f"handler:{self.label}": self._records}

    def report(self) -> dict[str, Any]:
        """What the handler's ``result()`` returned."""
        result = getattr(self.handler, "result", None)
        if not callable(result):
            return {}
        try:
            return {self.label: result()}
        except Exception as exc:
            return {self.label: f"result() failed: {type(exc).__name__}: {exc}"}
