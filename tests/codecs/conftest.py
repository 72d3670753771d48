"""Shared helpers for codec tests: real fixtures and chunk splitting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# tests/codecs/conftest.py -> repo is parents[2]; shared fixtures live next to the repo.
FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


@pytest.fixture
def ibm_fixtures() -> Path:
    """Directory of the real IBM VPC flow log objects."""
    path = (FIXTURES / "ibm-vpc-flowlogs").resolve()
    assert path.is_dir(), f"missing shared fixtures at {path}"
    return path


def split(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into ``size``-byte pieces, as a slow network would deliver it."""
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def chunked() -> Callable[[bytes, int], list[bytes]]:
    """The :func:`split` helper, as a fixture."""
    return split
