"""A followed partition's buffer: records read but not yet acknowledged by all its sinks.

Each sink of the partition's route has a :class:`Lane`: how far it was handed records and
how far it acknowledged them. The partition's checkpoint is the least acknowledgement of
its lanes; records leave the buffer only then (invariant 1).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from logferry.codecs.stream import StreamDecoder
from logferry.engine.batching import make_batch
from logferry.engine.routing import Route
from logferry.ledger.base import Claim
from logferry.records import Batch, Chunk
from logferry.sinks.base import Batching, Sink
from logferry.sources.stream import Cursor, PartitionInfo, StreamPartition

#: A partition buffers at most this many of its largest batch before reading pauses.
BUFFER_BATCHES = 3
#: Batches of one partition a sink may have waiting for delivery: enough to overlap.
MAX_INFLIGHT_PER_LANE = 2


@dataclass
class Run:
    """Records read in one go: positions ``[start, start + len(chunk))``, and the cursor
    just after them."""

    start: int
    chunk: Chunk
    nbytes: int
    cursor: Cursor | None
    #: When it was read (monotonic): batch waits count from here.
    read_at: float

    @property
    def end(self) -> int:
        return self.start + len(self.chunk)


@dataclass
class Lane:
    """One sink's progress through one partition."""

    sink: Sink
    batching: Batching
    #: Records handed to the sink's delivery thread, and acknowledged by the sink.
    sent: int
    acked: int
    inflight: int = 0


@dataclass
class Held:
    """A claimed, open partition, its buffer of records not yet checkpointed, its lanes."""

    info: PartitionInfo
    claim: Claim
    partition: StreamPartition
    route: Route
    lanes: list[Lane]
    #: Records read (the end of the buffer) and checkpointed (its start).
    position: int
    base: int
    runs: collections.deque[Run] = field(default_factory=collections.deque)
    buffered_bytes: int = 0
    cursor: Cursor | None = None
    caught_up: bool = False
    finished: bool = False
    read_after: float = 0.0
    read_delay: float = 0.5
    read_failures: int = 0
    #: A batch could not be delivered (shutdown, gave up) or the claim was lost: nothing
    #: more is checkpointed, and the partition is let go.
    abandoned: bool = False
    #: Serialises checkpoints of this partition across the sinks' delivery threads.
    checkpointing: threading.Lock = field(default_factory=threading.Lock)
    #: The route's codec step for this partition (its counters: lines shipped raw…).
    decoder: StreamDecoder | None = None

    @property
    def inflight(self) -> int:
        return sum(lane.inflight for lane in self.lanes)

    @property
    def largest_batch(self) -> int:
        return max(lane.batching.lines for lane in self.lanes)

    @property
    def drained(self) -> bool:
        """Finished, and every record read is checkpointed."""
        return self.finished and self.base == self.position

    def buffer_full(self) -> bool:
        size = max(lane.batching.bytes for lane in self.lanes) * BUFFER_BATCHES
        return self.room() <= 0 or self.buffered_bytes >= size

    def room(self) -> int:
        """Records that may still be read before the buffer is full."""
        return self.largest_batch * BUFFER_BATCHES - (self.position - self.base)

    def add(self, chunk: Chunk, cursor: Cursor | None, now: float) -> None:
        nbytes = sum(map(len, chunk.lines))
        self.runs.append(Run(self.position, chunk, nbytes, cursor, now))
        self.position += len(chunk)
        self.buffered_bytes += nbytes
        if cursor is not None:
            self.cursor = cursor

    def next_due(self) -> float:
        """Seconds until a lane's batch wait is over (a lane that can take a batch)."""
        now = time.monotonic()
        wait = float("inf")
        for lane in self.lanes:
            if lane.sent < self.position and lane.inflight < MAX_INFLIGHT_PER_LANE:
                wait = min(wait, max(0.0, self.waiting_since(lane) + lane.batching.wait - now))
        return wait

    def held_back(self) -> bool:
        """Waiting for the sinks: the buffer is full, or a batch is due for a sink that
        already has all the batches it may have in flight."""
        if self.abandoned or self.drained:
            return False
        return self.buffer_full() or any(
            lane.inflight >= MAX_INFLIGHT_PER_LANE and lane.sent < self.position
            for lane in self.lanes
        )

    def due(self, lane: Lane, now: float, drain: bool) -> bool:
        """Whether ``lane`` should be handed its next batch now."""
        b = lane.batching
        return (
            drain
            or self.position - lane.sent >= b.lines
            or now - self.waiting_since(lane) >= b.wait
            or self.unsent_bytes(lane) >= b.bytes
        )

    def waiting_since(self, lane: Lane) -> float:
        """When the oldest record not yet handed to ``lane`` was read."""
        for run in self.runs:
            if run.start >= lane.sent:
                return run.read_at
        return time.monotonic()

    def unsent_bytes(self, lane: Lane) -> int:
        total = 0
        for run in reversed(self.runs):
            if run.start < lane.sent:
                break
            total += run.nbytes
        return total

    def batch(self, source: str, start: int, batching: Batching) -> Batch:
        """Records from ``start`` (where a run begins) to the end of the run that reaches
        ``batching``'s lines or bytes, or to the end of the buffer, as one batch."""
        pieces: list[Chunk] = []
        lines_in = bytes_in = 0
        for run in self.runs:
            if run.start < start:
                continue
            pieces.append(run.chunk)
            lines_in += len(run.chunk)
            bytes_in += run.nbytes
            if lines_in >= batching.lines or bytes_in >= batching.bytes:
                break
        return make_batch(source, self.info.key, start, pieces, bytes_in)

    def acknowledged(self, target: int) -> list[Run] | None:
        """The runs every lane acknowledged up to ``target``, if they end exactly there."""
        if target <= self.base or self.abandoned:
            return None
        done = [run for run in self.runs if run.end <= target]
        # Acknowledgements end batches, and batches end where runs do.
        if not done or done[-1].end != target:
            return None
        return done

    def forget(self, done: list[Run], target: int, nbytes: int) -> None:
        """Drop checkpointed runs from the buffer."""
        for _ in done:
            self.runs.popleft()
        self.buffered_bytes -= nbytes
        self.base = target
