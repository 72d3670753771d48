"""The codec step for streams: framed lines of a growing partition into records.

Buckets hand whole objects to :func:`logferry.codecs.decode_object`; a tailed file or a log
stream hands over complete lines as they arrive. Both go through the same formats: the
route of a partition picks one (``format:`` in a pipeline file, ``--format``), and
:class:`StreamDecoder` applies it to each block of lines the partition reads.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence

from logferry.codecs.formats import DecodeContext, Format, FormatOptions, detect_format, get_format
from logferry.records import Chunk, concat_chunks

#: Stands for "the data had no time of its own" while a block is decoded.
_NO_TIME = -(2**62)


class StreamDecoder:
    """Decodes one partition's blocks of lines with one format ("auto": detected once)."""

    def __init__(self, format_name: str = "auto", options: FormatOptions | None = None) -> None:
        get_format(format_name)  # an unknown name fails here, at open time
        self.requested = format_name
        self.format_name: str | None = None if format_name == "auto" else format_name
        self.options = options or FormatOptions()
        #: Lines shipped raw, records truncated...: counted per partition.
        self.counters: collections.Counter[str] = collections.Counter()
        self._format: Format | None = None

    def _fmt(self, key: str, head: Callable[[], bytes]) -> Format:
        if self._format is None:
            if self.format_name is None:
                self.format_name = detect_format(key, head())
            self._format = get_format(self.format_name)
        return self._format

    def decode(
        self, data: bytes, key: str, default_ms: int, head: Callable[[], bytes] | None = None
    ) -> Chunk:
        """Records of ``data`` (complete lines); ``default_ms`` times lines that have none.

        ``head`` gives the partition's first bytes when "auto" has yet to pick a format.
        """
        fmt = self._fmt(key, head or (lambda: data))
        ctx = DecodeContext(key, default_ms, self.options, self.counters)
        chunks = list(fmt.decode([data], ctx))
        return concat_chunks(chunks) if chunks else Chunk([], [])

    def decode_events(self, messages: Sequence[str], times: Sequence[int], key: str) -> Chunk:
        """Records of log events: one message each, timed by the event when the data is not.

        With the plain ``lines`` format an event stays one record even when its message
        spans lines, as the stream holds it.
        """
        if not messages:
            return Chunk([], [])
        fmt = self._fmt(key, lambda: "\n".join(messages[:64]).encode("utf-8", "replace"))
        if self.format_name == "lines":
            return Chunk([m.rstrip("\r\n") for m in messages], list(times))
        data = "\n".join(m.rstrip("\r\n") for m in messages).encode("utf-8", "surrogateescape")
        ctx = DecodeContext(key, _NO_TIME, self.options, self.counters)
        chunks = list(fmt.decode([data + b"\n"], ctx))
        chunk = concat_chunks(chunks) if chunks else Chunk([], [])
        # One record per event keeps each event's own time where the data has none.
        per_event = len(chunk) == len(times)
        last = times[-1]
        chunk.timestamps = [
            (times[i] if per_event else last) if ts == _NO_TIME else ts
            for i, ts in enumerate(chunk.timestamps)
        ]
        return chunk
