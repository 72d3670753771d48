"""Decode one file in this process and print its records, counters, error and peak RSS.

Run as ``python -m tests.hostile.measure FILE FORMAT [OPTION=VALUE ...]``: a subprocess, so
the peak is the decoder's own, not the test runner's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from logferry.codecs import DecodeContext, FormatOptions, decode_object
from logferry.errors import DecodeError


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    path, fmt, *pairs = sys.argv[1:]
    options = FormatOptions(**{k: int(v) for k, v in (p.split("=") for p in pairs)})
    ctx = DecodeContext(path, 0, options)
    records = longest = 0
    error = None
    try:
        for chunk in decode_object(_chunks(Path(path)), ctx, fmt):
            records += len(chunk.lines)
            longest = max([longest, *map(len, chunk.lines)])
    except DecodeError as exc:
        error = str(exc)
    out = {"records": records, "longest": longest, "counters": dict(ctx.counters)}
    print(json.dumps({**out, "error": error, "peak_mb": _peak_mb()}))


if __name__ == "__main__":
    main()
