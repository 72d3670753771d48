"""Micro benchmark: the ndjson format's decode, in process, against a full parse per line.

Decodes ``--mb`` MB of the app NDJSON of ``ship_throughput.py`` (same generator, same seed),
already decompressed and cut into 1 MiB chunks, three ways, and prints CPU seconds (best of
``--repeat``) and lines/s for each:

* ``ndjson``: ``NdjsonFormat.decode`` as shipped (msgspec reads the timestamp and level
  fields of each line; framing, timestamps and fields included);
* ``full parse``: the same framing, then ``orjson.loads`` of each line and the fields taken
  from the dict (what ndjson did before the fast path);
* ``framing only``: ``iter_lines`` alone, the floor both share.

It also checks that the first two give the same records. Usage::

    python bench/ndjson_decode.py --mb 50 --repeat 5
    python bench/ndjson_decode.py --stages --mb 100 --repeat 3

``--stages`` instead times each step of shipping the object to Mezmo, in process: the NDJSON
gzipped at level 6 (as ``ship_throughput.py`` uploads it) in 1 MiB reads, inflated, framed
into lines, decoded by ndjson's steps (msgspec, timestamps, levels), batched as the engine
does (2 MiB), then the Mezmo sink's entries, JSON encoding and gzip. The steps run streaming,
block after block (so each sees the data as warm or cold in cache as the shipper does), and
each step's own CPU seconds exclude the steps feeding it. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ship_throughput import MB, iter_lines

from logferry.codecs import timestamps
from logferry.codecs.compression import decompress
from logferry.codecs.formats import DecodeContext, get_format, ndjson
from logferry.codecs.framing import iter_lines as frame_lines
from logferry.codecs.timestamps import parse_timestamp
from logferry.engine.batching import batches
from logferry.records import Chunk
from logferry.sinks.http import gzip_compress
from logferry.sinks.mezmo import MezmoSink

NAMES = ("timestamp", "@timestamp", "time", "ts")
T = TypeVar("T")


def chunks_of(mb: float, seed: int) -> list[bytes]:
    """The generated NDJSON, in 1 MiB chunks."""
    data = b"".join(iter_lines(seed, int(mb * MB)))
    return [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]


def fast(chunks: list[bytes]) -> tuple[list[int], list[Any]]:
    """Decode with the ndjson format."""
    times: list[int] = []
    fields: list[Any] = []
    for chunk in get_format("ndjson").decode(chunks, DecodeContext("k", 0)):
        times += chunk.timestamps
        fields += chunk.fields or []
    return times, fields


def full_parse(chunks: list[bytes]) -> tuple[list[int], list[Any]]:
    """Frame, then parse every line whole with orjson (not-JSON lines not expected here)."""
    times: list[int] = []
    fields: list[Any] = []
    counters: collections.Counter[str] = collections.Counter()
    for lines in frame_lines(chunks, counters=counters):
        for line in lines:
            value = orjson.loads(line)
            ts = 0
            for name in NAMES:
                raw = value.get(name)
                if raw is not None and raw != "":
                    ts = parse_timestamp(raw) or 0
                    break
            times.append(ts)
            level = value.get("level")
            fields.append({"level": level} if type(level) is str else {})
    return times, fields


def framing(chunks: list[bytes]) -> int:
    """Only split the chunks into lines."""
    return sum(len(lines) for lines in frame_lines(chunks))


def best_cpu(fn: Callable[[list[bytes]], Any], chunks: list[bytes], repeat: int) -> float:
    """Least CPU seconds of ``repeat`` runs (CPU time, not wall: the machine is shared)."""
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn(chunks)
        runs.append(time.process_time() - t0)
    return min(runs)


class Stages:
    """CPU seconds of each step of a streaming pipeline, excluding the steps it pulls from."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self._inner: list[float] = []  # per open step: CPU spent in the steps it called

    def _enter(self) -> float:
        self._inner.append(0.0)
        return time.thread_time()

    def _leave(self, name: str, started: float) -> None:
        spent = time.thread_time() - started
        inner = self._inner.pop()
        self.seconds[name] += spent - inner
        if self._inner:
            self._inner[-1] += spent

    def call(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, timed as step ``name``."""
        started = self._enter()
        try:
            return fn(*args)
        finally:
            self._leave(name, started)

    def pull(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """``items``, each ``next`` timed as step ``name``."""
        source = iter(items)
        while True:
            started = self._enter()
            try:
                item = next(source)
            except StopIteration:
                return
            finally:
                self._leave(name, started)
            yield item


def _listed(fn: Callable[[Any], T], items: list[Any]) -> list[T]:
    return list(map(fn, items))


def gzip_reads(mb: float, seed: int) -> list[bytes]:
    """The generated NDJSON gzipped at level 6, in 1 MiB reads (as S3 hands them over)."""
    data = gzip.compress(b"".join(iter_lines(seed, int(mb * MB))), 6)
    return [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]


def forget_timestamps() -> None:
    """Empty the timestamp caches: a shipper meets new seconds all the time, not a rerun."""
    for cache in (timestamps._cache, timestamps._second_cache, timestamps._suffix_cache):
        cache.clear()


def ship_stages(reads: list[bytes], sink: MezmoSink) -> collections.Counter[str]:
    """Run the shipping steps over ``reads`` block by block; CPU seconds per step."""
    forget_timestamps()
    st = Stages()
    picker = ndjson._picker(NAMES)
    decode = picker.decoder.decode

    def records() -> Iterator[Chunk]:
        pieces = st.pull("inflate", decompress(reads))
        for lines in st.pull("framing (bytes to str lines)", frame_lines(pieces)):
            picked = st.call("msgspec decode", _listed, decode, lines)
            times = st.call("timestamps", ndjson._times, picked, picker, 0)
            levels = st.call("level fields", _listed, picker.level, picked)
            fields = st.call("level fields", ndjson._fields, levels)
            yield Chunk(lines, times, fields)

    made = batches(records(), source="s3", key="k", skip=0, max_lines=10_000,
                   max_bytes=2 << 20, max_wait=1e9)  # fmt: skip
    for batch in st.pull("batching", made):
        lines = st.call("mezmo entries", sink._truncated, batch.lines)[0]
        entries = st.call("mezmo entries", sink._entries, batch, lines)
        body = st.call("json encode", sink._encode, entries)
        st.call("gzip", gzip_compress, body, 1)
    return st.seconds


def prepare_all(reads: list[bytes], sink: MezmoSink) -> int:
    """The real thing, end to end: decode_object's steps, engine batches, sink.prepare."""
    forget_timestamps()
    chunks = get_format("ndjson").decode(decompress(reads), DecodeContext("k", 0))
    n = 0
    for batch in batches(chunks, source="s3", key="k", skip=0, max_lines=10_000,
                         max_bytes=2 << 20, max_wait=1e9):  # fmt: skip
        sink.prepare(batch)
        n += len(batch)
    return n


def stages_main(args: argparse.Namespace) -> int:
    """Print the CPU seconds of each shipping step."""
    reads = gzip_reads(args.mb, args.seed)
    os.environ.setdefault("LOGDNA_INGESTION_KEY", "bench-ingestion-key")
    sink = MezmoSink("mezmo+http://127.0.0.1:9/logs/ingest", hostname="bench-host")
    runs = [ship_stages(reads, sink) for _ in range(args.repeat)]
    totals = []
    for _ in range(args.repeat):
        t0 = time.thread_time()
        lines = prepare_all(reads, sink)
        totals.append(time.thread_time() - t0)
    print(f"{args.mb:g} MB, {lines:,} lines, {sum(map(len, reads)) / MB:.1f} MB gzip; "
          f"CPU ms per step, best of {args.repeat}")  # fmt: skip
    best = {name: min(run[name] for run in runs) for name in runs[0]}
    for name, seconds in best.items():
        print(f"  {name:<30} {seconds * 1000:7.1f}")
    print(f"  {'sum of steps':<30} {sum(best.values()) * 1000:7.1f}")
    print(
        f"  {'decode + batch + prepare':<30} {min(totals) * 1000:7.1f}  (the same, untimed steps)"
    )
    return 0


def main() -> int:
    """Run the three decoders and print the table (or, with --stages, the shipping steps)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=50.0, help="uncompressed MB (10^6 B)")
    p.add_argument("--repeat", type=int, default=5, help="runs per decoder (best shown)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--stages", action="store_true", help="time each shipping step instead")
    args = p.parse_args()
    if args.stages:
        return stages_main(args)
    chunks = chunks_of(args.mb, args.seed)
    lines = framing(chunks)
    if fast(chunks) != full_parse(chunks):
        print("ndjson and the full parse disagree", file=sys.stderr)
        return 1
    print(f"{args.mb:g} MB, {lines:,} lines; CPU seconds, best of {args.repeat}")
    for name, fn in (("ndjson", fast), ("full parse", full_parse), ("framing only", framing)):
        seconds = best_cpu(fn, chunks, args.repeat)
        print(f"{name:<13} {seconds:6.3f} s {lines / seconds:>12,.0f} lines/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
