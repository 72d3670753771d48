"""The stream runner over an in-memory stream source: cursors, batching, outages, errors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from logferry.config import ShipOptions
from logferry.engine import Route, Router
from logferry.errors import FatalSinkError, RetryableSinkError
from logferry.ledger import SQLiteLedger, Status
from logferry.records import Batch, Chunk
from logferry.sinks.base import Batching, Sink
from logferry.sources.stream import (
    Cursor,
    PartitionInfo,
    ReadResult,
    StreamPartition,
    StreamSource,
)
from tests.helpers import wait_for
from tests.shipping import stream_runner


@dataclass(frozen=True, slots=True)
class IndexCursor(Cursor):
    """The index of the next line."""

    at: int = 0


class MemorySource(StreamSource):
    """Partitions are growing lists of lines; the cursor is the index of the next line."""

    cursor_type = IndexCursor

    def __init__(self) -> None:
        self.id = self.display = "memory://test"
        self.data: dict[str, list[str]] = {}
        self.opened: list[tuple[str, int | None]] = []

    def partitions(self) -> list[PartitionInfo]:
        return [PartitionInfo(k, "v1") for k in list(self.data)]

    def open(
        self, part: PartitionInfo, cursor: Cursor | None, position: int, decoder: Any = None
    ) -> StreamPartition:
        at = cursor.at if isinstance(cursor, IndexCursor) else None
        self.opened.append((part.key, at))
        return MemoryPartition(self.data[part.key], at or 0)

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, 0.01))


class MemoryPartition(StreamPartition):
    def __init__(self, lines: list[str], at: int) -> None:
        self.lines, self.at = lines, at

    def read(self, max_records: int) -> ReadResult:
        got = self.lines[self.at : self.at + min(max_records, 7)]  # small reads: many rounds
        self.at += len(got)
        chunk = Chunk(got, [1_700_000_000_000 + i for i in range(len(got))])
        return ReadResult(chunk, IndexCursor(self.at), caught_up=self.at >= len(self.lines))


class Collect(Sink):
    def __init__(self, fail_transient: int = 0, fail_fatal_at: int | None = None) -> None:
        self.rows: list[tuple[str, int, str]] = []
        self.fail_transient = fail_transient
        self.fail_fatal_at = fail_fatal_at

    def write(self, batch: Batch) -> None:
        if self.fail_transient:
            self.fail_transient -= 1
            raise RetryableSinkError("ingest down")
        if self.fail_fatal_at is not None and batch.start <= self.fail_fatal_at < batch.end:
            self.fail_fatal_at = None
            raise FatalSinkError("HTTP 400: bad batch")
        self.rows.extend((batch.key, batch.start + i, line) for i, line in enumerate(batch.lines))


OPTS = ShipOptions(batch_lines=20, batch_wait=0.05, lease_seconds=30)


def test_reads_to_the_end_then_resumes_from_the_cursor(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(55)], "b/with/slash": [f"b{i}" for i in range(3)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    sink = Collect()
    r = stream_runner(src, [sink], ledger, OPTS, follow=False).run()
    assert r.lines == 58
    assert r.ok
    assert [x[2] for x in sink.rows if x[0] == "a"] == [f"a{i}" for i in range(55)]
    assert [x[1] for x in sink.rows if x[0] == "a"] == list(range(55))  # positions
    entry = ledger.get("memory://test", "a", "v1")
    assert entry
    assert entry.status == Status.PENDING
    assert entry.position == 55
    src.data["a"].extend(["a55", "a56"])
    r = stream_runner(src, [sink], ledger, OPTS, follow=False).run()
    assert r.lines == 2
    assert ("a", 55) in src.opened
    assert [x[2] for x in sink.rows if x[0] == "a"][-2:] == ["a55", "a56"]
    ledger.close()


def test_follow_picks_up_new_partitions_and_lines(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": ["a0"]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    sink = Collect()
    stop = threading.Event()
    runner = stream_runner(
        src, [sink], ledger, OPTS, follow=True, stop=stop, discover_interval=0.05
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_for(lambda: sink.rows, timeout=5, message="the first line")  # now following
        src.data["a"].append("a1")
        src.data["new"] = ["n0", "n1"]
        wait_for(lambda: len(sink.rows) >= 4, timeout=5, message="the new lines")
    finally:
        stop.set()
        thread.join(5)
    assert sorted(x[2] for x in sink.rows) == ["a0", "a1", "n0", "n1"]
    assert ledger.get("memory://test", "new", "v1").position == 2  # type: ignore[union-attr]
    ledger.close()


def test_an_outage_holds_the_records_and_loses_nothing(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(30)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    sink = Collect(fail_transient=2)
    runner = stream_runner(src, [sink], ledger, OPTS, follow=False)
    # make the retry wait short for the test
    r = runner.run()
    if len(sink.rows) < 30:  # the run may end with records held: the next run delivers them
        r = stream_runner(src, [sink], ledger, OPTS, follow=False).run()
    assert [x[2] for x in sink.rows] == [f"a{i}" for i in range(30)]
    assert r.failed == []
    ledger.close()


def test_a_refused_batch_becomes_a_range_in_the_error_queue(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(50)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    sink = Collect(fail_fatal_at=25)
    r = stream_runner(src, [sink], ledger, OPTS, follow=False).run()
    (failure,) = r.failed
    assert failure.key.startswith("a#")
    assert "400" in failure.error
    start, end = map(int, failure.key.split("#")[1].split("-"))
    assert start <= 25 < end
    delivered = [x[1] for x in sink.rows]
    assert delivered == [i for i in range(50) if not start <= i < end]  # the rest went on
    # A dead letter with the refused records, not a fake object row.
    assert ledger.entries(status=Status.FAILED) == []
    (letter,) = ledger.dead_letters()
    assert letter.range_key == failure.key
    assert letter.error_class == "FatalSinkError"
    kept = ledger.dead_letter_records(letter)
    assert kept is not None
    assert kept.lines == [f"a{i}" for i in range(start, end)]
    assert r.dead_letters == end - start
    assert ledger.get("memory://test", "a", "v1").position == 50  # type: ignore[union-attr]
    ledger.close()


def test_two_runners_split_the_partitions(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {f"p{i}": [f"p{i}-{j}" for j in range(10)] for i in range(6)}
    sink = Collect()
    path = tmp_path / "l.db"
    stop = threading.Event()
    runners = [
        stream_runner(src, [sink], SQLiteLedger(path), OPTS, follow=True, stop=stop)
        for _ in range(2)
    ]
    threads = [threading.Thread(target=r.run) for r in runners]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(sink.rows) >= 60, timeout=5, message="every partition's lines")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert sorted(x[2] for x in sink.rows) == sorted(
        f"p{i}-{j}" for i in range(6) for j in range(10)
    )


class FlakyReads(MemorySource):
    """The first two reads of every partition fail as a throttled API would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    def open(
        self, part: PartitionInfo, cursor: Cursor | None, position: int, decoder: Any = None
    ) -> StreamPartition:
        inner = super().open(part, cursor, position)
        source = self

        class Flaky(StreamPartition):
            def read(self, max_records: int) -> ReadResult:
                if source.failures:
                    source.failures -= 1
                    from logferry.errors import SourceError

                    raise SourceError("throttled", transient=True)
                return inner.read(max_records)

        return Flaky()


def test_a_transient_read_error_keeps_the_partition(tmp_path: Path) -> None:
    src = FlakyReads()
    src.data = {"a": [f"a{i}" for i in range(12)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    sink = Collect()
    r = stream_runner(src, [sink], ledger, OPTS, follow=False).run()
    assert r.ok
    assert [x[2] for x in sink.rows] == [f"a{i}" for i in range(12)]
    ledger.close()


def test_a_retried_batch_is_not_duplicated_in_a_file(tmp_path: Path) -> None:
    from logferry.sinks.files import FileSink

    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(10)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    files = FileSink(tmp_path / "out")
    flaky = Collect(fail_transient=2)  # the second sink fails twice: the batch is written again
    r = stream_runner(src, [files, flaky], ledger, OPTS, follow=False).run()
    files.close()
    assert r.ok
    (out,) = list((tmp_path / "out").rglob("*.jsonl"))
    import orjson

    assert [orjson.loads(x)["position"] for x in out.read_bytes().splitlines()] == list(range(10))
    ledger.close()


# -- per-sink lanes: own batching, independent delivery, one checkpoint ---------------------


class Sizes(Collect):
    """Records the size of every batch and can be switched off (transient failures)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.sizes: list[int] = []
        self.down = threading.Event()

    def write(self, batch: Batch) -> None:
        if self.down.is_set():
            raise RetryableSinkError(f"{self.name} down")
        self.sizes.append(len(batch))
        super().write(batch)


def _run_in_thread(runner: Any) -> threading.Thread:
    thread = threading.Thread(target=runner.run)
    thread.start()
    return thread


def test_each_sink_gets_batches_of_its_own_size(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(200)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    small, large = Sizes("small"), Sizes("large")
    small.batching = Batching(lines=10, bytes=1 << 20, wait=60.0)
    large.batching = Batching(lines=100, bytes=1 << 20, wait=0.3)
    stop = threading.Event()
    runner = stream_runner(src, [small, large], ledger, OPTS, stop=stop, discover_interval=0.05)
    thread = _run_in_thread(runner)
    wait_for(lambda: len(large.rows) == 200)
    stop.set()
    thread.join(5)
    assert [x[2] for x in small.rows] == [x[2] for x in large.rows] == src.data["a"]
    # Reads come 7 records at a time, so a batch is cut at the first read reaching the size.
    assert max(small.sizes) < 20
    assert min(small.sizes[:-1]) >= 10
    assert min(large.sizes[:-1]) >= 100
    assert len(large.sizes) <= 3  # the rest after its wait
    assert ledger.get("memory://test", "a", "v1").position == 200  # type: ignore[union-attr]
    ledger.close()


def test_a_sink_that_is_down_does_not_hold_up_the_others(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(20)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    healthy, flaky = Sizes("healthy"), Sizes("flaky")
    flaky.down.set()
    stop = threading.Event()
    runner = stream_runner(src, [healthy, flaky], ledger, OPTS, stop=stop, discover_interval=0.05)
    thread = _run_in_thread(runner)
    wait_for(lambda: len(healthy.rows) == 20)
    src.data["a"].extend(f"a{i}" for i in range(20, 40))
    wait_for(lambda: len(healthy.rows) == 40)  # still flowing while the other sink is down
    assert flaky.rows == []
    # Nothing is checkpointed past what every sink has: a restart now would resend it all.
    entry = ledger.get("memory://test", "a", "v1")
    assert entry is not None
    assert entry.position == 0
    flaky.down.clear()
    wait_for(lambda: len(flaky.rows) == 40, timeout=15)
    wait_for(lambda: ledger.get("memory://test", "a", "v1").position == 40)  # type: ignore[union-attr]
    stop.set()
    thread.join(5)
    assert [x[2] for x in flaky.rows] == [x[2] for x in healthy.rows] == src.data["a"]
    ledger.close()


def test_a_sink_that_is_down_pauses_reading_only_its_partitions(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {
        "down/a": [f"d{i}" for i in range(500)],
        "up/b": [f"u{i}" for i in range(100)],
    }
    ledger = SQLiteLedger(tmp_path / "l.db")
    broken, fine = Sizes("broken"), Sizes("fine")
    broken.down.set()
    router = Router([Route("down/", (broken,)), Route("up/", (fine,))])
    stop = threading.Event()
    runner = stream_runner(src, [], ledger, OPTS, router=router, stop=stop, discover_interval=0.05)
    thread = _run_in_thread(runner)
    wait_for(lambda: len(fine.rows) == 100)
    src.data["up/b"].extend(f"u{i}" for i in range(100, 150))
    wait_for(lambda: len(fine.rows) == 150)
    held = runner._held["down/a"]
    # The buffer of the stuck partition stops at a bounded size instead of growing.
    assert held.position - held.base <= OPTS.batch_lines * 3 + 7
    stop.set()
    thread.join(5)
    assert broken.rows == []
    assert ledger.get("memory://test", "down/a", "v1").position == 0  # type: ignore[union-attr]
    ledger.close()


# -- races and stalls found in review ------------------------------------------------------


class OnePerRead(MemorySource):
    """One record per read: a long buffer of small runs, as a slowly growing file gives."""

    def open(
        self, part: PartitionInfo, cursor: Cursor | None, position: int, decoder: Any = None
    ) -> StreamPartition:
        at = cursor.at if isinstance(cursor, IndexCursor) else 0
        partition = MemoryPartition(self.data[part.key], at)
        read = partition.read
        partition.read = lambda max_records: read(1)  # type: ignore[method-assign]
        return partition


def test_reading_while_deliveries_trim_the_buffer(tmp_path: Path) -> None:
    # The reader walks the buffer (is a batch due?) while delivery threads drop acknowledged
    # runs from it: that once raised "deque mutated during iteration" and killed the run.
    src = OnePerRead()
    src.data = {"a": [f"a{i}" for i in range(20_000)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    one, two = Collect(), Collect()
    opts = ShipOptions(batch_lines=500, batch_wait=100.0, lease_seconds=30)
    r = stream_runner(src, [one, two], ledger, opts, follow=False).run()
    assert r.ok
    assert r.lines == 20_000
    assert [x[2] for x in one.rows] == [x[2] for x in two.rows] == src.data["a"]
    ledger.close()


class DownForLong(Collect):
    def write(self, batch: Batch) -> None:
        raise RetryableSinkError("503 Service Unavailable", retry_after=30.0)


class CrashesOnThirdListing(MemorySource):
    listings = 0

    def partitions(self) -> list[PartitionInfo]:
        self.listings += 1
        if self.listings >= 3:
            raise KeyboardInterrupt  # a bug in the loop, or Ctrl-C
        return super().partitions()


def test_a_crash_does_not_wait_out_a_sinks_retry_delay(tmp_path: Path) -> None:
    src = CrashesOnThirdListing()
    src.data = {"a": [f"a{i}" for i in range(30)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    runner = stream_runner(src, [DownForLong()], ledger, OPTS, discover_interval=0.2)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert time.monotonic() - began < 5  # not the 30 s Retry-After
    assert ledger.get("memory://test", "a", "v1").position == 0  # type: ignore[union-attr]
    ledger.close()


class BreaksAfterSixReads(MemorySource):
    def open(
        self, part: PartitionInfo, cursor: Cursor | None, position: int, decoder: Any = None
    ) -> StreamPartition:
        at = cursor.at if isinstance(cursor, IndexCursor) else 0
        partition = MemoryPartition(self.data[part.key], at)
        read, reads = partition.read, [0]

        def breaking(max_records: int) -> ReadResult:
            reads[0] += 1
            time.sleep(0.05)  # slow enough that batches are in flight before the break
            if reads[0] > 6:
                raise PermissionError("unreadable")  # not transient: the partition is dropped
            return read(max_records)

        partition.read = breaking  # type: ignore[method-assign]
        return partition


def test_a_dropped_partition_is_not_retried_by_a_sink_that_is_down(tmp_path: Path) -> None:
    src = BreaksAfterSixReads()
    src.data = {"a": [f"a{i}" for i in range(400)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    up, down = Collect(), Sizes("down")
    down.down.set()
    stop = threading.Event()
    runner = stream_runner(src, [up, down], ledger, OPTS, stop=stop, discover_interval=60)
    thread = _run_in_thread(runner)
    try:
        wait_for(lambda: bool(runner.result.failed))  # dropped after its read error
        # Let go once its sink gives up the dropped partition's batch (within a retry).
        wait_for(lambda: "a" not in runner._held, timeout=10)
    finally:
        stop.set()
        thread.join(10)
    assert [f.key for f in runner.result.failed] == ["a"]
    assert down.rows == []
    assert len(up.rows) >= 20  # batches were out before the drop
    ledger.close()


def test_a_one_off_run_gives_up_on_a_sink_that_stays_down(tmp_path: Path) -> None:
    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(30)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    down = Sizes("down")
    down.down.set()
    opts = ShipOptions(batch_lines=20, batch_wait=0.05, lease_seconds=30, retry_timeout=1)
    began = time.monotonic()
    r = stream_runner(src, [down], ledger, opts, follow=False).run()
    assert time.monotonic() - began < 10
    assert (r.held, r.ok, r.lines) == (1, False, 0)
    assert ledger.get("memory://test", "a", "v1").position == 0  # type: ignore[union-attr]
    up = Collect()
    r = stream_runner(src, [up], ledger, opts, follow=False).run()  # the next run resumes
    assert r.ok
    assert [x[2] for x in up.rows] == src.data["a"]
    ledger.close()


def test_records_give_each_handler_its_own_fields() -> None:
    batch = Batch("s", "k", 0, 1, ["x"], [0], [{"level": "info"}])
    first = next(batch.records())
    assert first.fields == {"level": "info"}
    first.fields["level"] = "changed by a handler"  # type: ignore[index]
    assert next(batch.records()).fields == {"level": "info"}
    assert batch.fields == [{"level": "info"}]


def test_a_claim_taken_over_while_a_sink_is_down_is_let_go(tmp_path: Path) -> None:
    # No checkpoint happens while the only sink is down, so only the heartbeat can notice
    # that another runner took the partition (this one paused past its lease).
    import sqlite3

    src = MemorySource()
    src.data = {"a": [f"a{i}" for i in range(10)]}
    ledger = SQLiteLedger(tmp_path / "l.db")
    down = Sizes("down")
    down.down.set()
    opts = ShipOptions(batch_lines=20, batch_wait=0.05, lease_seconds=1.5)  # renewed every 0.5 s
    stop = threading.Event()
    runner = stream_runner(src, [down], ledger, opts, stop=stop, discover_interval=60)
    thread = _run_in_thread(runner)
    try:
        wait_for(lambda: "a" in runner._held)
        with sqlite3.connect(tmp_path / "l.db") as con:
            con.execute("UPDATE objects SET owner = 'other-host:1:x', lease_until = 1e12")
        wait_for(lambda: "a" not in runner._held, timeout=10)
    finally:
        stop.set()
        thread.join(10)
    assert down.rows == []
    entry = ledger.get("memory://test", "a", "v1")
    assert entry is not None
    assert entry.owner == "other-host:1:x"  # left alone
    ledger.close()
