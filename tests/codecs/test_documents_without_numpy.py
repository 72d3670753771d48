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


def _feed(guard: object, data: bytes, cuts: list[int]) -> tuple[str, int, bool]:
    edges = [0, *cuts, len(data)]
    try:
        for a, b in itertools.pairwise(edges):
            guard.feed(data[a:b])  # type: ignore[attr-defined]
    except DecodeError:
        return "refused", 0, False
    return "ok", guard.depth, bool(guard.in_string)  # type: ignore[attr-defined]


def test_python_guard_matches_numpy_guard_on_random_bytes_and_cuts() -> None:
    pytest.importorskip("numpy")
    documents._nesting_guard(4)  # loads NumPy for the reference guard
    rng = random.Random(12)
    for _ in range(1500):
        data = _document(rng)
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data), rng.randint(0, 5))))
        want = _feed(documents._NestingGuard(4), data, cuts)
        got = _feed(documents._PyNestingGuard(4), data, cuts)
        assert got == want, (data, cuts)


def test_deep_document_is_refused_and_strings_do_not_count() -> None:
    guard = documents._PyNestingGuard(3)
    guard.feed(b'{"a": "[[[[[[\\"[[[", "b": [[')
    assert guard.depth == 3
    with pytest.raises(DecodeError, match="nested deeper than 3"):
        guard.feed(b"[")
