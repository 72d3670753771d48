"""The tail source on real files: appends, partial lines, rotation, truncation, resume."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from logferry.codecs.stream import StreamDecoder
from logferry.errors import ConfigError
from logferry.sources.tail import TailCursor, TailPartition, TailSource
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(30)


class Follower:
    """What the runner does with a stream source, with a dict for a ledger.

    The ledger maps (key, version) to the last cursor. A partition with no row of its own
    is offered the cursor of a row with the same version (a file renamed while we were away).
    """

    def __init__(self, source: TailSource, ledger: dict[tuple[str, str], str] | None = None):
        self.source = source
        self.ledger: dict[tuple[str, str], str] = {} if ledger is None else ledger
        self.done: set[tuple[str, str]] = set()
        self.parts: dict[tuple[str, str], TailPartition] = {}
        self.lines: list[str] = []

    def poll(self, max_records: int = 10_000) -> None:
        for info in self.source.partitions():
            k = (info.key, info.version)
            if k in self.parts or k in self.done:
                continue
            cursor = self.ledger.get(k)
            if cursor is None:
                cursor = next((c for (_, v), c in self.ledger.items() if v == info.version), None)
            self.parts[k] = self.source.open(info, TailCursor.decode(cursor), 0)
        for k, part in list(self.parts.items()):
            while True:
                r = part.read(max_records)
                self.lines += r.chunk.lines
                if r.cursor is not None:
                    self.ledger[k] = r.cursor.encode()
                if r.finished:
                    part.close()
                    del self.parts[k]
                    self.done.add(k)
                    break
                if r.caught_up:
                    break

    def until(self, done: Callable[[], bool], timeout: float = 4.0, wait: float = 0.05) -> None:
        def step() -> bool:
            self.poll()
            if done():
                return True
            self.source.wait(wait)  # the source's own wake-up (inotify or its poll interval)
            return False

        wait_for(
            step,
            timeout=timeout,
            interval=0,
            message=lambda: f"have {len(self.lines)} lines: {self.lines[-5:]}",
        )

    def close(self) -> None:
        for part in self.parts.values():
            part.close()
        self.source.close()


@pytest.fixture
def logdir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "logs"
    d.mkdir()
    yield d


def append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def lines(a: int, b: int, prefix: str = "line") -> bytes:
    return "".join(f"{prefix} {i}\n" for i in range(a, b)).encode()


def make(logdir: Path, glob: str = "*.log", **kw: object) -> TailSource:
    kw.setdefault("rotate_wait", 0.2)
    return TailSource(str(logdir / glob), **kw)  # type: ignore[arg-type]


def test_from_url_forms(logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = TailSource.from_url(f"tail://{logdir}/*.log")
    assert src.id == f"tail://{logdir}/*.log"
    assert src.pattern == f"{logdir}/*.log"
    monkeypatch.chdir(logdir)
    assert TailSource.from_url("tail:sub/app-?.log").pattern == f"{logdir}/sub/app-?.log"
    with pytest.raises(ConfigError, match="host"):
        TailSource.from_url("tail://relative/*.log")
    with pytest.raises(ConfigError, match="unknown format"):
        StreamDecoder("nope")


def test_fingerprint_needs_a_first_line_and_is_stable_as_the_file_grows(logdir: Path) -> None:
    src = make(logdir)
    log = logdir / "app.log"
    append(log, b"no newline yet")
    assert src.partitions() == []
    append(log, b"\n")
    [p1] = src.partitions()
    append(log, lines(0, 100))
    [p2] = src.partitions()
    assert (p1.key, p1.version) == (p2.key, p2.version) == (str(log), p1.version)
    assert p2.size > p1.size
    long = logdir / "long.log"
    append(long, b"x" * 2000)  # a first line longer than the cap is fingerprinted at once
    assert {p.key for p in src.partitions()} == {str(log), str(long)}


def test_appends_are_picked_up_with_low_latency(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"start\n")
    src = make(logdir)
    f = Follower(src)
    f.until(lambda: f.lines == ["start"])
    stamps: dict[str, float] = {}
    latencies: list[float] = []

    def writer() -> None:
        for i in range(10):
            time.sleep(0.05)
            stamps[f"msg {i}"] = time.monotonic()
            append(log, f"msg {i}\n".encode())

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 4
    seen = 1
    while len(f.lines) < 11 and time.monotonic() < deadline:
        src.wait(1.0)  # inotify wakes this at once; polling alone would sleep the second
        f.poll()
        now = time.monotonic()
        latencies += [now - stamps[line] for line in f.lines[seen:]]
        seen = len(f.lines)
    t.join()
    assert src._observer is not None, "watchdog/inotify should be in use"
    assert f.lines == ["start"] + [f"msg {i}" for i in range(10)]
    assert max(latencies) < 0.5, latencies
    f.close()


def test_polling_fallback(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"a\n")
    src = make(logdir, watch=False, poll_interval=0.05)
    f = Follower(src)
    f.until(lambda: f.lines == ["a"])
    t0 = time.monotonic()
    threading.Timer(0.1, append, (log, b"b\n")).start()
    f.until(lambda: f.lines == ["a", "b"], wait=10.0)  # wait() sleeps poll_interval at most
    assert src._observer is None
    assert time.monotonic() - t0 < 1.0
    f.close()


def test_partial_line_is_not_emitted_until_its_newline(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"one\ntw")
    src = make(logdir)
    [info] = src.partitions()
    part = src.open(info, None, 0)
    r = part.read(100)
    assert r.chunk.lines == ["one"]
    assert r.caught_up
    assert r.cursor == TailCursor(4, info.version)
    r = part.read(100)
    assert r.chunk.lines == []
    assert r.cursor == TailCursor(4, info.version)
    append(log, b"o\nthr")
    assert part.read(100).chunk.lines == ["two"]
    append(log, b"ee\n")
    assert part.read(100).chunk.lines == ["three"]
    part.close()


def test_line_split_across_two_writes_by_a_thread(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"first\n")
    src = make(logdir)
    f = Follower(src)
    f.until(lambda: f.lines == ["first"])

    def writer() -> None:
        for i in range(20):
            append(log, f"half {i} ".encode())
            time.sleep(0.005)
            append(log, b"and the rest\n")

    t = threading.Thread(target=writer)
    t.start()
    f.until(lambda: len(f.lines) >= 21)
    t.join()
    f.poll()
    assert f.lines == ["first"] + [f"half {i} and the rest" for i in range(20)]
    f.close()


def rotate_by_rename(log: Path, rotated: Path, total: int, at: int) -> threading.Thread:
    """A thread writing ``total`` lines to ``log``, renamed to ``rotated`` after ``at``."""

    def run() -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for i in range(total):
            if i == at:
                os.write(fd, b"last words ")  # the old file's last line ends after the rename
                os.rename(log, rotated)
                os.write(fd, b"of the old file\n")
                os.close(fd)
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f"line {i}\n".encode())
            if i % 10 == 0:
                time.sleep(0.005)
        os.close(fd)

    return threading.Thread(target=run)


@pytest.mark.parametrize(
    "glob", ["*.log", "app.log*"], ids=["rotated-unmatched", "rotated-matched"]
)
def test_rename_rotation_loses_and_duplicates_nothing(logdir: Path, glob: str) -> None:
    log = logdir / "app.log"
    append(log, b"header\n")
    src = make(logdir, glob)
    f = Follower(src)
    f.until(lambda: f.lines == ["header"])
    [first] = f.parts
    t = rotate_by_rename(log, logdir / "app.log.1", total=400, at=200)
    t.start()
    expected = ["header", "last words of the old file"] + [f"line {i}" for i in range(400)]
    f.until(lambda: len(f.lines) >= len(expected) and first in f.done)
    t.join()
    # A line written after everything else, read: every later poll had its chance to repeat.
    append(log, b"end marker\n")
    f.until(lambda: "end marker" in f.lines)
    f.lines.remove("end marker")
    assert sorted(f.lines) == sorted(expected)
    assert len(f.lines) == len(set(f.lines))
    assert first in f.done
    old = f.lines.index("line 199")
    assert f.lines[:old] == ["header"] + [f"line {i}" for i in range(199)]  # in file order
    f.close()


def test_rotated_file_that_stops_matching_finishes_after_rotate_wait(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, lines(0, 3))
    src = make(logdir)
    f = Follower(src)
    f.until(lambda: len(f.lines) == 3)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.rename(log, logdir / "app.old")
    os.write(fd, b"after rename\nunterminated")  # the writer has not reopened yet
    os.close(fd)
    f.poll()
    assert f.lines[-1] == "after rename"
    assert len(f.parts) == 1
    f.until(lambda: not f.parts, timeout=2)
    assert f.lines[-1] == "unterminated"  # shipped once the rotated file is over
    f.close()


def test_rotated_file_finishes_once_a_new_file_with_a_first_line_takes_its_path(
    logdir: Path,
) -> None:
    log = logdir / "app.log"
    append(log, lines(0, 2))
    src = make(logdir, rotate_wait=60.0)
    f = Follower(src)
    f.until(lambda: len(f.lines) == 2)
    src.wait(0.01)  # starts watching
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.rename(log, logdir / "app.log.1")
    os.write(fd, b"late\nunterminated")  # the writer has not reopened yet
    os.close(fd)
    log.touch()  # an empty successor says nothing yet: the old file is still followed
    f.until(lambda: f.lines[-1:] == ["late"])
    wait_for(src.listing_changed, timeout=2)  # created and renamed: list again now
    f.poll()
    assert len(f.parts) == 1
    append(log, b"new 0\n")  # the writer moved on: the old file is over, well before 60 s
    f.until(lambda: f.lines[-2:] == ["unterminated", "new 0"], timeout=2)
    assert f.lines == ["line 0", "line 1", "late", "unterminated", "new 0"]
    f.close()


@pytest.mark.parametrize("glob", ["*.log", "app.log*"], ids=["copy-unmatched", "copy-matched"])
def test_copytruncate(logdir: Path, glob: str) -> None:
    log = logdir / "app.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, lines(0, 10))
    src = make(logdir, glob)
    f = Follower(src)
    f.until(lambda: len(f.lines) == 10)
    os.write(fd, lines(10, 15))  # written after the last read, before the copy
    shutil.copyfile(log, logdir / "app.log.1")
    os.truncate(log, 0)
    os.write(fd, lines(0, 5, "new"))
    os.close(fd)
    f.until(lambda: "new 4" in f.lines and list(f.parts) == [(str(log), ANY)])
    # A line written after everything else, read: every later poll had its chance to repeat.
    append(log, b"end marker\n")
    f.until(lambda: "end marker" in f.lines)
    f.lines.remove("end marker")
    new = [f"new {i}" for i in range(5)]
    if glob == "app.log*":  # the copy carries the lines the truncation took away
        assert sorted(f.lines) == sorted([f"line {i}" for i in range(15)] + new)
    else:  # copytruncate's own window: lines written between the last read and the copy
        assert f.lines == [f"line {i}" for i in range(10)] + new
    f.close()


def test_truncation_starts_over(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, lines(0, 5))
    src = make(logdir)
    f = Follower(src)
    f.until(lambda: len(f.lines) == 5)
    os.truncate(log, 0)
    f.poll()  # an empty file: nothing to tell yet
    append(log, b"fresh 1\nfresh 2\n")
    f.until(lambda: f.lines[-2:] == ["fresh 1", "fresh 2"])
    assert f.lines == [f"line {i}" for i in range(5)] + ["fresh 1", "fresh 2"]
    f.close()


def test_truncation_back_to_the_same_first_line_goes_on_as_the_same_version(
    logdir: Path,
) -> None:
    log = logdir / "app.log"
    append(log, b"#header\nA\n")
    src = make(logdir)
    f = Follower(src)
    f.until(lambda: f.lines == ["#header", "A"])
    os.truncate(log, 0)
    f.poll()
    append(log, b"#header\nB\n")  # as long as before: only the earlier shrink tells
    f.until(lambda: len(f.lines) == 4)
    assert f.lines == ["#header", "A", "#header", "B"]
    assert len(f.parts) == 1
    assert not f.done
    f.close()


def test_new_files_matching_the_glob_are_found(logdir: Path) -> None:
    append(logdir / "a.log", b"a1\n")
    src = make(logdir, start="end")
    f = Follower(src)
    f.poll()
    assert f.lines == []  # start=end skips what was there at startup
    append(logdir / "b.log", b"b1\nb2\n")  # files created later are read from the start
    append(logdir / "ignored.txt", b"x\n")
    append(logdir / "a.log", b"a2\n")
    f.until(lambda: len(f.lines) == 3)
    assert sorted(f.lines) == ["a2", "b1", "b2"]
    f.close()


def test_start_end_resumes_after_the_last_complete_line(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"old 1\nold 2\npart")
    src = make(logdir, start="end")
    f = Follower(src)
    f.poll()
    assert f.lines == []
    append(log, b"ial\nnew\n")
    f.until(lambda: len(f.lines) == 2)
    assert f.lines == ["partial", "new"]
    f.close()


def test_resume_from_cursor_after_restart(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, lines(0, 10))
    f1 = Follower(make(logdir))
    f1.poll(max_records=4)  # reads in runs of 4: the cursor moves mid-file
    assert f1.lines == [f"line {i}" for i in range(10)]
    ledger = dict(f1.ledger)
    f1.close()
    # A "crash" after only the first 4 lines were acknowledged.
    src = make(logdir)
    [info] = src.partitions()
    part = src.open(info, None, 0)
    r = part.read(4)
    assert r.chunk.lines == [f"line {i}" for i in range(4)]
    assert not r.caught_up
    part.close()
    src.close()
    append(log, lines(10, 13))
    f2 = Follower(
        make(logdir, start="end"), {(info.key, info.version): r.cursor.encode() if r.cursor else ""}
    )
    f2.poll()
    assert f2.lines == [f"line {i}" for i in range(4, 13)]  # the cursor beats start=end
    f2.close()
    # Rotated while down: the renamed file resumes from the cursor kept under the old name.
    os.rename(log, logdir / "app.log.1")
    append(logdir / "app.log.1", b"late\n")
    append(log, b"next file\n")
    f3 = Follower(make(logdir, "app.log*"), ledger)
    f3.until(lambda: len(f3.lines) >= 5)
    assert sorted(f3.lines) == ["late", "line 10", "line 11", "line 12", "next file"]
    f3.close()


def test_a_cursor_for_another_file_at_the_path_reads_the_new_file_whole(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"new content\nmore\n")
    src = make(logdir, start="end")
    [info] = src.partitions()
    stale = TailCursor(5, "0123456789abcdef0123")
    part = src.open(info, stale, 0)
    assert part.read(10).chunk.lines == ["new content", "more"]
    part.close()


def test_crlf_and_invalid_utf8(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"one\r\ntwo\r\nbad \xff\xfe bytes\n\n")
    src = make(logdir)
    [info] = src.partitions()
    part = src.open(info, None, 0)
    r = part.read(100)
    assert r.chunk.lines == ["one", "two", "bad \ufffd\ufffd bytes"]
    assert r.caught_up
    assert isinstance(r.cursor, TailCursor)
    assert r.cursor.offset == log.stat().st_size
    part.close()


def test_five_megabyte_line(logdir: Path) -> None:
    log = logdir / "app.log"
    big = b"x" * (5 * 1024 * 1024)
    append(log, b"small\n" + big[: len(big) // 2])
    src = make(logdir)
    [info] = src.partitions()
    part = src.open(info, None, 0)
    assert part.read(100).chunk.lines == ["small"]
    assert part.read(100).chunk.lines == []
    append(log, big[len(big) // 2 :] + b"\nafter\n")
    got: list[str] = []
    while True:
        r = part.read(100)
        got += r.chunk.lines
        if r.caught_up:
            break
    # Capped at the decoder's line limit, its head kept: reading it costs bounded memory.
    kept = (1 << 20) - 48  # the limit, less room for the marker
    assert got[0] == "x" * kept + f" …[truncated {len(big) - kept} bytes]"
    assert len(got[0].encode()) <= 1 << 20
    assert got[1] == "after"
    assert part.counters == {"truncated_lines": 1}
    part.close()


def test_max_records_and_format_counters(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b'{"msg": "a", "timestamp": "2024-05-01T00:00:00Z"}\nnot json\n{"msg": "c"}\n')
    src = make(logdir)
    [info] = src.partitions()
    part = src.open(info, None, 0, StreamDecoder("ndjson"))
    r1 = part.read(2)
    assert len(r1.chunk) == 2
    assert not r1.caught_up
    assert r1.chunk.timestamps[0] == 1714521600000
    assert r1.chunk.lines[1] == "not json"
    r2 = part.read(2)
    assert len(r2.chunk) == 1
    assert r2.caught_up
    assert part.counters["not_json"] == 1
    part.close()


def test_deleted_file_finishes(logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, b"a\nb\n")
    src = make(logdir)
    f = Follower(src)
    f.poll()
    log.unlink()
    f.until(lambda: not f.parts, timeout=2)
    assert f.lines == ["a", "b"]
    assert src.partitions() == []
    f.close()


def _long_line_log(logdir: Path, size: int = 50 << 20) -> Path:
    log = logdir / "long.log"
    with log.open("wb") as f:
        f.write(b"first\n")
        for _ in range(size // (1 << 20)):
            f.write(b"x" * (1 << 20))
        f.write(b"\nlast\n")
    return log


def test_line_longer_than_the_limit_keeps_its_head_and_the_offset_its_place(
    logdir: Path,
) -> None:
    log = _long_line_log(logdir)
    long_end = 6 + (50 << 20) + 1
    src = make(logdir)
    [info] = src.partitions()
    part = src.open(info, None, 0)
    got = [part.read(1) for _ in range(3)]
    assert [r.cursor for r in got] == [
        TailCursor(6, info.version),
        TailCursor(long_end, info.version),
        TailCursor(log.stat().st_size, info.version),
    ]
    first, middle, last = (r.chunk.lines for r in got)
    assert (first, last) == (["first"], ["last"])
    [line] = middle
    limit = part.decoder.options.max_line_bytes
    assert line.startswith("xxx")
    assert line.endswith(f" …[truncated {(50 << 20) - (limit - 48)} bytes]")
    assert len(line.encode()) <= limit
    assert part.counters == {"truncated_lines": 1}
    assert got[2].caught_up
    part.close()
    # Resuming right after the long line goes on with the next line, once.
    part = src.open(info, TailCursor(long_end, info.version), 0)
    assert part.read(100).chunk.lines == ["last"]
    part.close()


_READ_ALL = """
import sys
from pathlib import Path
from logferry.sources.tail import TailSource

def peak_mb():
    status = Path("/proc/self/status").read_text()
    return next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")) / 1024

src = TailSource(sys.argv[1], rotate_wait=0.2)
[info] = src.partitions()
part = src.open(info, None, 0)
before = peak_mb()
records = 0
while True:
    r = part.read(10_000)
    records += len(r.chunk.lines)
    if r.caught_up:
        break
print(records, peak_mb() - before)
"""


def test_reading_a_long_line_costs_bounded_memory(logdir: Path) -> None:
    import subprocess
    import sys

    _long_line_log(logdir)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run(
        [sys.executable, "-c", _READ_ALL, str(logdir / "*.log")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    records, grew = done.stdout.split()
    assert int(records) == 3
    # Half the line: reading it whole (as before the cap) grew the peak by about 100 MB.
    assert float(grew) < 25, done.stdout
