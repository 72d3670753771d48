"""Text from outside (keys, message bodies, server answers) made safe to show anywhere.

Standard library only, so the engine, the worker and the CLI share one rule (invariant 7).
"""

from __future__ import annotations

import re

__all__ = ["visible"]

# What must never reach a terminal or a log as it is: C0 and C1 controls (escape sequences,
# BEL, carriage returns and newlines that fake output lines), DEL, bidirectional overrides and
# line separators (text that reads differently from what it is), and the lone surrogates
# that undecodable file names become (printing them raises UnicodeEncodeError).
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte the name really had
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``value`` as text whose every invisible trick is a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(_escape, str(value))
