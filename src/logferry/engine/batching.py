"""Building batches: decoded chunks regrouped by lines, bytes and time, and read-ahead."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from logferry.records import Batch, Chunk, concat_chunks


class Stopped(Exception):
    """Raised inside a worker when shutdown was requested."""


def make_batch(source: str, key: str, start: int, pieces: list[Chunk], nbytes: int) -> Batch:
    """One batch of the records in ``pieces``, at positions ``[start, start + len)``."""
    merged = concat_chunks(pieces)
    batch = Batch(source, key, start, start + len(merged), merged.lines, merged.timestamps,
                  merged.fields, nbytes)  # type: ignore[arg-type]  # fmt: skip
    batch.columns = merged.columns
    return batch


def batches(
    chunks: Iterable[Chunk],
    *,
    source: str,
    key: str,
    skip: int,
    max_lines: int,
    max_bytes: int,
    max_wait: float,
) -> Iterator[Batch]:
    """Regroup decoded chunks into batches, dropping the first ``skip`` (acknowledged) records."""
    seen = 0
    start = skip
    pieces: list[Chunk] = []
    count = nbytes = 0
    began = time.monotonic()

    def flush() -> Batch:
        nonlocal pieces, count, nbytes, start, began
        batch = make_batch(source, key, start, pieces, nbytes)
        start += count
        pieces, count, nbytes = [], 0, 0
        began = time.monotonic()
        return batch

    for chunk in chunks:
        n = len(chunk)
        if seen + n <= skip:
            seen += n
            continue
        if seen < skip:
            chunk = chunk.slice(skip - seen)
            seen = skip
        seen += len(chunk)
        i = 0
        ends: list[int] | None = None  # ends[k]: bytes of the chunk's first k lines
        while i < len(chunk):
            room = max_lines - count
            n = min(room, len(chunk) - i)
            if ends is None:
                size = sum(map(len, chunk.lines if n == len(chunk) else chunk.lines[i : i + n]))
            else:
                size = ends[i + n] - ends[i]
            # A piece that overflows the byte budget is halved until it fits (one line at
            # least); the sizes come from running sums, not a new sum for every half.
            if nbytes + size > max_bytes and n > 1:
                if ends is None:
                    ends = list(itertools.accumulate(map(len, chunk.lines), initial=0))
                while nbytes + size > max_bytes and n > 1:
                    n = max(1, n // 2)
                    size = ends[i + n] - ends[i]
            piece = chunk if n == len(chunk) else chunk.slice(i, i + n)
            pieces.append(piece)
            count += len(piece)
            nbytes += size
            i += len(piece)
            if count >= max_lines or nbytes >= max_bytes:
                yield flush()
        if count and time.monotonic() - began >= max_wait:
            yield flush()
    if count:
        yield flush()


_DONE = object()


def prefetch(items: Iterator[Any], depth: int, cancel: threading.Event) -> Iterator[Any]:
    """Run ``items`` in a thread, ``depth`` items ahead of the consumer; errors propagate."""
    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    thread = threading.Thread(target=produce, name="logferry-decode", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if cancel.is_set():
                    raise Stopped() from None
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)
