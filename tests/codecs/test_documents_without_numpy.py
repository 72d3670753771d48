"""The JSON nesting guard without NumPy (an optional extra) agrees with the NumPy one."""

from __future__ import annotations

import itertools
import random

import pytest

from logferry.codecs import documents
from logferry.errors import DecodeError

OUTSIDE = [b"{", b"}", b"[", b"]", b"a", b" ", b":", b","]
INSIDE = [b"{", b"}", b"[", b"]", b"a", b"\\\\", b'\\"', b"\\n"]


def _document(rng: random.Random) -> bytes:
    """Bytes shaped like JSON where it matters here: backslashes only inside strings."""
    parts = []
    for _ in range(rng.randint(0, 30)):
        if rng.random() < 0.2:
            body = b"".join(rng.choice(INSIDE) for _ in range(rng.randint(0, 6)))
            parts.append(b'"' + body + b'"')
        else:
            parts.append(rng.choice(OUTSIDE))
    if rng.random() < 0.3:  # the document so far ends inside a string
        parts.append(b'"' + b"".join(rng.choice(INSIDE) for _ in range(rng.randint(0, 6))))
    return b"".join(parts)


def _feed(scanner: object, data: bytes, cuts: list[int], level: int) -> tuple[object, ...]:
    """What the scan says piece by piece: commas and close at ``level`` (as document
    offsets), then the final depth and whether it ends inside a string; or "refused"."""
    edges = [0, *cuts, len(data)]
    found: list[tuple[list[int], int]] = []
    try:
        for a, b in itertools.pairwise(edges):
            commas, close = scanner.feed(data[a:b], level)  # type: ignore[attr-defined]
            found.append(([a + int(c) for c in commas], a + close if close >= 0 else -1))
    except DecodeError:
        return ("refused",)
    return (found, scanner.depth, bool(scanner.in_string))  # type: ignore[attr-defined]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_python_scan_matches_numpy_scan_on_random_bytes_and_cuts(level: int) -> None:
    pytest.importorskip("numpy")
    rng = random.Random(12 + level)
    for _ in range(1500):
        data = _document(rng)
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data), rng.randint(0, 5))))
        want = _feed(documents._Scanner(4), data, cuts, level)
        got = _feed(documents._PyScanner(4), data, cuts, level)
        assert got == want, (data, cuts)


def test_deep_document_is_refused_and_strings_do_not_count() -> None:
    scanner = documents._PyScanner(3)
    scanner.feed(b'{"a": "[[[[[[\\"[[[", "b": [[')
    assert scanner.depth == 3
    with pytest.raises(DecodeError, match="nested deeper than 3"):
        scanner.feed(b"[")
