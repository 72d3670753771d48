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
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ship_throughput import MB, iter_lines

from logferry.codecs.formats import DecodeContext, get_format
from logferry.codecs.framing import iter_lines as frame_lines
from logferry.codecs.timestamps import parse_timestamp

NAMES = ("timestamp", "@timestamp", "time", "ts")


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


def main() -> int:
    """Run the three decoders and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=50.0, help="uncompressed MB (10^6 B)")
    p.add_argument("--repeat", type=int, default=5, help="runs per decoder (best shown)")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
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
