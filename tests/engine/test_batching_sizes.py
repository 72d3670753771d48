"""Batches cut by lines and bytes: a chunk that overflows the byte budget is halved."""

from __future__ import annotations

import random

from logferry.engine.batching import batches
from logferry.records import Chunk


def _reference(chunks: list[Chunk], skip: int, max_lines: int, max_bytes: int) -> list[list[str]]:
    """The rule, spelled out: take what room allows, halve while over budget (1 line min)."""
    lines = [line for chunk in chunks for line in chunk.lines][skip:]
    bounds = [len(c) for c in chunks]
    out: list[list[str]] = []
    current: list[str] = []
    nbytes = 0
    at = 0  # index into lines
    # Chunk edges after the skip, so pieces never span two chunks.
    edges, total = [], 0
    for n in bounds:
        total += n
        if total > skip:
            edges.append(total - skip)
    start = 0
    for end in edges:
        at = start
        while at < end:
            n = min(max_lines - len(current), end - at)
            size = sum(map(len, lines[at : at + n]))
            while nbytes + size > max_bytes and n > 1:
                n = max(1, n // 2)
                size = sum(map(len, lines[at : at + n]))
            current += lines[at : at + n]
            nbytes += size
            at += n
            if len(current) >= max_lines or nbytes >= max_bytes:
                out.append(current)
                current, nbytes = [], 0
        start = end
    if current:
        out.append(current)
    return out


def test_batches_follow_the_halving_rule() -> None:
    rng = random.Random(7)
    for _ in range(400):
        chunks = []
        for _ in range(rng.randint(0, 5)):
            n = rng.randint(0, 30)
            lines = ["x" * rng.choice([0, 1, 5, 50, 500, rng.randint(0, 3000)]) for _ in range(n)]
            chunks.append(Chunk(lines, list(range(n))))
        skip = rng.randint(0, 20)
        max_lines, max_bytes = rng.randint(1, 40), rng.randint(1, 5000)
        got = batches(
            chunks, source="s", key="k", skip=skip, max_lines=max_lines, max_bytes=max_bytes,
            max_wait=1e9,
        )  # fmt: skip
        made = [(b.lines, b.nbytes) for b in got]
        want = _reference(chunks, skip, max_lines, max_bytes)
        assert [lines for lines, _ in made] == want
        assert [n for _, n in made] == [sum(map(len, lines)) for lines in want]
