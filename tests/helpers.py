"""Helpers shared by tests across folders (fixtures live in conftest.py files)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    After ``timeout`` seconds the test fails with ``message`` (a string, or a callable
    evaluated then, for details gathered at the moment of failure) and the last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout:g} s: {text} (last value: {value!r})")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on the loopback interface now (for servers a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def age_object(bucket: str, key: str, days: float) -> None:
    """Make an object of the in-process moto S3 server ``days`` older.

    S3 sets LastModified when an object is written, so an old object is made old in the
    server's own state (the session's moto server runs in the test process); listings and
    HEAD then report that time.
    """
    import datetime as dt

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    partitions = s3_backends[DEFAULT_ACCOUNT_ID]
    backend = partitions["aws"] if "aws" in partitions else partitions["global"]
    backend.buckets[bucket].keys[key].last_modified -= dt.timedelta(days=days)
