"""The Mezmo sink's table of levels seen stays small whatever levels the logs carry."""

from __future__ import annotations

import msgspec

from logferry.sinks import mezmo


def test_long_levels_are_sent_but_not_kept() -> None:
    long = "x" * 100_000  # a level is untrusted: it must not stay for the process's life
    assert mezmo._sendable_levels(["info", long]) is None
    assert long not in mezmo._LEVELS
    sent = mezmo._sendable_levels(["info", "", 3])
    assert sent is not None
    assert list(sent) == ["info", msgspec.UNSET, msgspec.UNSET]
