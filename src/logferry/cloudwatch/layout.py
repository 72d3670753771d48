"""The download directory's file layout and line formats.

Layout under ``DIR``::

    GROUP_ENC/STREAM_ENC.HASH.log     one file per (group, stream); .jsonl with --json
    .logferry/ledger.db               the ledger: per stream, the events written and the cursor
    .logferry/daemons/HOST-PID.json   each running download: pid, heartbeat, status port, counters

``*_ENC`` percent-encode every byte outside ``[A-Za-z0-9_-]`` plus a leading dot, so ``/``
never makes a directory and names stay portable; ``HASH`` is a digest of the exact
(group, stream) pair, so names that differ only in case stay apart on case-insensitive disks.
Every event is exactly one line, which is what lets a resume cut a file back to the events
the ledger acknowledged.
"""

from __future__ import annotations

import hashlib
import re

import orjson

from logferry.records import Batch
from logferry.sources.cloudwatch import INGESTION_COLUMN, MESSAGE_COLUMN, split_key

STATE_DIR = ".logferry"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_ENCODED = 120  # keeps GROUP_ENC and STREAM_ENC.HASH.jsonl under common 255-byte limits


def _encode(name: str) -> str:
    encoded = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]  # no hidden files, no '.' or '..'
    return encoded[:_MAX_ENCODED] or "%"


def stream_id(group: str, stream: str) -> str:
    """A short digest of the exact (group, stream) pair."""
    return hashlib.sha256(f"{group}\0{stream}".encode()).hexdigest()[:16]


def stream_relpath(group: str, stream: str, *, as_json: bool) -> str:
    """The data file of (group, stream), relative to the download directory."""
    suffix = "jsonl" if as_json else "log"
    return f"{_encode(group)}/{_encode(stream)}.{stream_id(group, stream)[:10]}.{suffix}"


def key_relpath(key: str, *, as_json: bool) -> str:
    """The data file of the partition ``GROUP:STREAM``."""
    group, stream = split_key(key)
    return stream_relpath(group, stream, as_json=as_json)


def encode_lines(batch: Batch) -> bytes:
    """One line per event: its message, embedded newlines written as ``\\n``."""
    # One event per line keeps the resume exact; --json is the lossless form.
    return "".join(line.replace("\n", "\\n") + "\n" for line in batch.lines).encode(
        "utf-8", "surrogateescape"
    )


def encode_json(batch: Batch) -> bytes:
    """One JSON object per event: ``timestamp``, ``ingestionTime`` and the exact message."""
    n = len(batch.lines)
    ingested = batch.column(INGESTION_COLUMN) or [None] * n
    messages = batch.column(MESSAGE_COLUMN) or [None] * n
    return b"".join(
        orjson.dumps(
            {
                "timestamp": batch.timestamps[i],
                "ingestionTime": ingested[i],
                "message": batch.lines[i] if messages[i] is None else messages[i],
            }
        )
        + b"\n"
        for i in range(n)
    )
