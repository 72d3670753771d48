"""Shared helpers for codec tests: real fixtures and chunk splitting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from logferry.codecs.formats import DecodeContext, get_format
from logferry.records import Chunk
from tests.conftest import FIXTURES


@pytest.fixture
def ibm_fixtures() -> Path:
    """Directory of the real IBM VPC flow log objects."""
    path = (FIXTURES / "ibm-vpc-flowlogs").resolve()
    assert path.is_dir(), f"missing shared fixtures at {path} (set LOGFERRY_FIXTURES)"
    return path


def split(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into ``size``-byte pieces, as a slow network would deliver it."""
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def chunked() -> Callable[[bytes, int], list[bytes]]:
    """The :func:`split` helper, as a fixture."""
    return split


def decode_merged(name: str, chunks: list[bytes], ctx: DecodeContext) -> Chunk:
    """Decode with format ``name`` and merge its chunks, checking each is well-formed."""
    merged = Chunk([], [], [])
    for chunk in get_format(name).decode(chunks, ctx):
        assert len(chunk) > 0, "formats must not yield empty chunks"
        assert len(chunk.timestamps) == len(chunk.lines)
        merged.lines += chunk.lines
        merged.timestamps += chunk.timestamps
        if chunk.fields is None:
            merged.fields = None
        else:
            assert len(chunk.fields) == len(chunk.lines)
            assert merged.fields is not None
            merged.fields += chunk.fields
    return merged


def utc_ms(text: str) -> int:
    """UTC epoch ms of an ISO 8601 string with an offset, computed independently of the codecs."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)
