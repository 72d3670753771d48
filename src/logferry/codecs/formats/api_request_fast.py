"""Vectorised decoding of well-formed ``api-request`` blocks with NumPy.

The per-line Python parse (split, ``int``, ``float``, a dict lookup for the time) costs about
3 µs a line and holds the GIL, which caps a tail at ~250k lines/s before any sink runs. This
module parses a whole block of lines at once, straight from its bytes: every step is a NumPy
operation over all lines, so the cost per line is a few dozen nanoseconds.

It is a *fast path* only. :func:`parse_block` accepts a block when every line has exactly
the shape the generator writes: printable ASCII, single spaces, a ``YYYY-mm-dd HH:MM:SS``
time at the start, a three-digit status and a plain decimal duration. For anything else it
returns None and the caller decodes the block line by line, which gives the reasons for
malformed lines. The values are identical to the line-by-line parse: durations go through
NumPy's bytes-to-float cast, which rounds correctly as ``float()`` does, and timestamps follow
the proleptic Gregorian calendar, as ``datetime`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Offsets of the time's digits in ``YYYY-mm-dd HH:MM:SS`` and of its separators.
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_SEPARATORS = np.array([4, 7, 10, 13, 16])
_SEPARATOR_BYTES = np.frombuffer(b"-- ::", dtype=np.uint8)
_TIME_WIDTH = 19
#: Widest duration and string token the fast path takes (the generator's are far shorter).
_MAX_DURATION = 32
_MAX_TOKEN = 256
#: Bytes a duration may hold (and 0, the padding); anything else takes the slow path.
_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[np.frombuffer(b"\x000123456789.eE+-", dtype=np.uint8)] = True
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def parse_block(block: bytes) -> tuple[list[str], np.ndarray, dict[str, Any]] | None:
    """Lines, UTC epoch-ms timestamps and field columns of ``block``; None if not simple.

    ``block`` holds whole lines, each ending in ``\\n``. The columns are NumPy arrays:
    ``customer_id`` and ``request_path`` (object arrays of ``str``), ``status_code``
    (int16), ``duration`` (float64, seconds) and ``success`` (bool).
    """
    if not block.endswith(b"\n"):
        return None
    a = np.frombuffer(block, dtype=np.uint8)
    if a.max() > 126:
        return None
    newlines = np.flatnonzero(a == 10)
    n = len(newlines)
    # Printable ASCII only: no tabs, CRs, control or non-ASCII bytes (str.split() would split
    # on some of them), and no blank lines.
    if n == 0 or np.count_nonzero(a < 32) != n:
        return None
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = newlines[:-1] + 1
    spaces = np.flatnonzero(a == 32)
    if len(spaces) != 5 * n:
        return None
    sp = spaces.reshape(n, 5)
    # Row i holds line i's spaces when its first is at offset 10 and its last before the
    # newline; the tokens between are non-empty, the status three characters wide.
    if not (
        np.array_equal(sp[:, 0], starts + 10)
        and np.array_equal(sp[:, 1], starts + 19)
        and bool(np.all(sp[:, 4] < newlines - 1))
        and bool(np.all(sp[:, 2] - sp[:, 1] > 1))
        and bool(np.all(sp[:, 3] - sp[:, 2] > 1))
        and bool(np.all(sp[:, 4] - sp[:, 3] == 4))
    ):
        return None
    # Zero padding lets fixed-width gathers run past the last line without bounds checks.
    a = np.concatenate((a, np.zeros(_MAX_TOKEN + 8, dtype=np.uint8)))
    timestamps = _timestamps(a, starts)
    status = _status(a, sp[:, 3] + 1)
    duration = _durations(a, sp[:, 4] + 1, newlines)
    if timestamps is None or status is None or duration is None:
        return None
    customers = _tokens(a, sp[:, 1] + 1, sp[:, 2])
    paths = _tokens(a, sp[:, 2] + 1, sp[:, 3])
    if customers is None or paths is None:
        return None
    lines = block.decode("ascii").split("\n")
    lines.pop()  # after the last newline
    columns: dict[str, Any] = {
        "customer_id": customers,
        "request_path": paths,
        "status_code": status,
        "duration": duration,
        "success": (status >= 200) & (status < 400),
    }
    return lines, timestamps, columns


def _digits(a: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes from each start, as an (n, width) matrix of byte values."""
    return a[starts[:, None] + np.arange(width)]


def _timestamps(a: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """Epoch ms of each line's ``YYYY-mm-dd HH:MM:SS``; None if any is not a valid time."""
    m = _digits(a, starts, _TIME_WIDTH)
    if not np.array_equal(
        m[:, _SEPARATORS], np.broadcast_to(_SEPARATOR_BYTES, (len(m), len(_SEPARATORS)))
    ):
        return None
    d = m[:, _DIGITS].astype(np.int64) - 48
    if d.min() < 0 or d.max() > 9:
        return None
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    hour = d[:, 8] * 10 + d[:, 9]
    minute = d[:, 10] * 10 + d[:, 11]
    second = d[:, 12] * 10 + d[:, 13]
    if (
        year.min() < 1
        or month.min() < 1
        or month.max() > 12
        or day.min() < 1
        or hour.max() > 23
        or minute.max() > 59
        or second.max() > 59
    ):
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if np.any(day > _DAYS_IN_MONTH[month] + (leap & (month == 2))):
        return None
    days = _days_from_civil(year, month, day)
    return ((days * 86400 + hour * 3600 + minute * 60 + second) * 1000).astype(np.int64)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (Howard Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _status(a: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """Three-digit HTTP statuses (100-599); None if any is not one."""
    d = _digits(a, starts, 3).astype(np.int16) - 48
    if d.min() < 0 or d.max() > 9:
        return None
    status = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    if status.min() < 100 or status.max() > 599:
        return None
    return status


def _padded(
    a: np.ndarray, starts: np.ndarray, ends: np.ndarray, limit: int, multiple: int = 1
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each ``a[start:end]`` as a row of a zero-padded (n, width) byte matrix, and the widths;
    None when a token is wider than ``limit``. The width is rounded up to ``multiple``."""
    widths = ends - starts
    width = int(widths.max())
    if width > limit:
        return None
    width = -(-width // multiple) * multiple
    inside = np.arange(width) < widths[:, None]
    return np.where(inside, a[starts[:, None] + np.arange(width)], 0).astype(np.uint8), widths


def _durations(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Finite non-negative decimals (``0.084213``, ``12``, ``1e-3``) as float(); else None."""
    padded = _padded(a, starts, ends, _MAX_DURATION)
    if padded is None:
        return None
    m = padded[0]
    width = m.shape[1]
    if not _NUMBER_BYTES[m].all():
        return None
    try:
        # NumPy's bytes-to-float cast rounds correctly, like float(); zero padding is dropped.
        values = m.view(f"S{width}").ravel().astype(np.float64)
    except ValueError:
        return None
    # NaN fails the comparison, and so do negative and infinite values.
    if not bool(np.all((values >= 0.0) & (values < np.inf))):
        return None
    return values


def _tokens(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Each ``a[start:end]`` as ``str`` in an object array; distinct values decoded once."""
    gathered = _padded(a, starts, ends, _MAX_TOKEN, multiple=8)
    if gathered is None:
        return None
    m, widths = gathered
    padded = m.shape[1]
    words = m.view(np.uint64)  # (n, padded / 8), the token's bytes zero-padded
    h = widths.astype(np.uint64)
    for j in range(words.shape[1]):
        h = (h ^ words[:, j]) * _HASH_MULTIPLIER
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    # A hash collision would merge two tokens: check every row against its representative.
    if not np.array_equal(m, m[first[inverse]]):
        return None
    # Zero padding is what a NumPy bytes string drops, so each row views as its token.
    distinct = np.ascontiguousarray(m[first]).view(f"S{padded}").ravel()
    values = np.empty(len(first), dtype=object)
    values[:] = [token.decode("ascii") for token in distinct.tolist()]
    return values[inverse.reshape(-1)]
