"""CloudWatch Logs as a pipeline source: one partition per (group, stream).

``cloudwatch://GROUP_PREFIX[?streams=a,b | ?stream_regex=R][&start=T][&region=R]``: every
stream of every group whose name starts with ``GROUP_PREFIX`` (``cloudwatch:///aws/lambda/``
for ``/aws/lambda/…``). Partition keys are ``GROUP:STREAM``: CloudWatch allows ``:`` in
neither name, so the first colon splits them unambiguously (both may contain ``/``). The
partition version is the stream's creation time, so a stream deleted and re-created under the
same name is a new partition. The cursor is a JSON :class:`StreamCursor` (forward token, the
start time it belongs to, and the last event's millisecond for expired tokens).

With ``read_ahead=N``, pages are fetched by N threads (one page in flight per stream at
most, all under the client's one rate limiter) while the runner delivers the ones before.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict

from logferry.cloudwatch.cursor import StreamCursor
from logferry.codecs.stream import StreamDecoder
from logferry.errors import ConfigError
from logferry.records import Chunk
from logferry.redact import redact_url
from logferry.registry import Component
from logferry.sources.stream import (
    Cursor,
    PartitionInfo,
    ReadResult,
    StreamPartition,
    StreamSource,
)
from logferry.timeparse import parse_time

if TYPE_CHECKING:  # the client needs boto3: imported when a source is opened
    from logferry.cloudwatch.client import LogsClient
    from logferry.cloudwatch.reader import StreamReader

_PARAMS = {"streams", "stream_regex", "start", "region", "get_rate", "describe_rate"}
#: With ``event_columns``: each event's ingestion time (epoch ms), and its message where the
#: record's line differs from it (a trailing newline the ``lines`` format drops).
INGESTION_COLUMN = "cloudwatch_ingestion_ms"
MESSAGE_COLUMN = "cloudwatch_message"


def partition_key(group: str, stream: str) -> str:
    """``GROUP:STREAM``, the ledger key of a stream."""
    return f"{group}:{stream}"


def split_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`partition_key`."""
    group, sep, stream = key.partition(":")
    if not sep:
        raise ConfigError(f"not a CloudWatch partition key (GROUP:STREAM): {key!r}")
    return group, stream


@dataclass(frozen=True, slots=True)
class CloudWatchURL:
    """What a ``cloudwatch://`` URL selects."""

    prefix: str
    streams: list[str] | None
    stream_regex: str | None
    start_ms: int | None
    region: str | None
    rates: dict[str, float]


def parse_cloudwatch_url(url: str) -> CloudWatchURL:
    """Parse ``cloudwatch://GROUP_PREFIX[?streams=a,b&stream_regex=R&start=T]``; no client."""
    parts = urlsplit(url)
    if parts.scheme != "cloudwatch":
        raise ConfigError(f"not a cloudwatch:// URL: {redact_url(url)!r}")
    prefix = unquote(parts.netloc + parts.path)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - _PARAMS
    if unknown:
        raise ConfigError(
            f"cloudwatch://: unknown parameter {sorted(unknown)[0]!r} "
            f"(known: {', '.join(sorted(_PARAMS))})"
        )

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    streams_param = one("streams")
    streams = [s for s in streams_param.split(",") if s] if streams_param is not None else None
    regex = one("stream_regex")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"cloudwatch://: stream_regex {regex!r}: {exc}") from None
    if streams is not None and regex:
        raise ConfigError("cloudwatch://: streams and stream_regex exclude each other")
    start = one("start")
    rates: dict[str, float] = {}
    for name, op in (("get_rate", "GetLogEvents"), ("describe_rate", "DescribeLogStreams")):
        value = one(name)
        if value is not None:
            try:
                rates[op] = float(value)
            except ValueError:
                raise ConfigError(f"cloudwatch://: {name} must be a number") from None
    start_ms = parse_time(start) if start else None
    return CloudWatchURL(prefix, streams, regex or None, start_ms, one("region"), rates)


class CloudWatchPartition(StreamPartition):
    """One log stream read forward with GetLogEvents."""

    def __init__(
        self, reader: StreamReader, decoder: StreamDecoder, key: str, event_columns: bool = False
    ) -> None:
        self._reader = reader
        self.decoder = decoder
        self._key = key
        self._event_columns = event_columns
        self._delay: float | None = None

    def read(self, max_records: int) -> ReadResult:
        """The next page of events (messages as lines, event times as timestamps)."""
        from logferry.cloudwatch.client import StreamNotFoundError

        try:
            page = self._reader.read(limit=max_records)
        except StreamNotFoundError:
            return ReadResult(Chunk([], []), self._reader.cursor, True, finished=True)
        messages = [e["message"] for e in page.events]
        ingested = [e["ingestionTime"] for e in page.events if e.get("ingestionTime")]
        if ingested:
            self._delay = max(0.0, time.time() - max(ingested) / 1000)
        chunk = self.decoder.decode_events(
            messages, [int(e["timestamp"]) for e in page.events], self._key
        )
        if self._event_columns and len(chunk) == len(messages):
            chunk.columns = {
                **(chunk.columns or {}),
                INGESTION_COLUMN: [e.get("ingestionTime") for e in page.events],
                MESSAGE_COLUMN: [
                    None if m == line else m for m, line in zip(messages, chunk.lines, strict=True)
                ],
            }
        return ReadResult(chunk, page.cursor, caught_up=page.caught_up)

    def ingestion_delay(self) -> float | None:
        """Seconds between the newest event's ingestion and its reading (last page)."""
        return self._delay


class ReadAheadPartition(StreamPartition):
    """Fetches the next page of a partition in a thread pool; ``read`` never waits for it.

    ``read`` hands over the page fetched since the last call, or nothing while it is still
    on its way. A caught-up stream is asked again after ``poll_interval`` seconds (None:
    never, for runs that stop at the current end).
    """

    def __init__(
        self,
        inner: StreamPartition,
        pool: ThreadPoolExecutor,
        landed: threading.Event,
        poll_interval: float | None,
    ) -> None:
        self._inner = inner
        self._pool = pool
        self._landed = landed
        self._poll = poll_interval
        self._pending: Future[ReadResult] | None = None
        self._not_before = 0.0
        self.decoder = getattr(inner, "decoder", None)

    def read(self, max_records: int) -> ReadResult:
        """The page fetched meanwhile, if any; starts fetching the next one when due."""
        fut = self._pending
        if fut is not None:
            if not fut.done():
                return ReadResult(Chunk([], []), None, caught_up=False)
            self._pending = None
            result = fut.result()  # a failed fetch raises here, in the runner's thread
            if result.caught_up:
                wait = float("inf") if self._poll is None else self._poll
                self._not_before = time.monotonic() + wait
            return result
        if time.monotonic() < self._not_before:
            return ReadResult(Chunk([], []), None, caught_up=True)
        self._pending = self._pool.submit(self._inner.read, max_records)
        self._pending.add_done_callback(lambda _: self._landed.set())
        return ReadResult(Chunk([], []), None, caught_up=False)

    def ingestion_delay(self) -> float | None:
        """The inner partition's."""
        return self._inner.ingestion_delay()

    def close(self) -> None:
        """Forget a fetch in flight (its page is read again from the checkpoint)."""
        if self._pending is not None:
            self._pending.cancel()
        self._inner.close()


class CloudWatchSource(StreamSource):
    """The streams of the log groups under a prefix, optionally filtered by name or regex."""

    cursor_type = StreamCursor
    unit = "streams"

    def __init__(
        self,
        group_prefix: str,
        *,
        streams: list[str] | None = None,
        stream_regex: str | None = None,
        start_ms: int | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: LogsClient | None = None,
        page_size: int | None = None,
        read_ahead: int = 0,
        poll_interval: float | None = None,
        event_columns: bool = False,
    ) -> None:
        if streams is not None and stream_regex:
            raise ConfigError("cloudwatch://: streams and stream_regex exclude each other")
        self.group_prefix = group_prefix
        self.streams = streams
        self.stream_regex = re.compile(stream_regex) if stream_regex else None
        self.start_ms = start_ms
        if client is None:
            from logferry.cloudwatch.client import LogsClient

            client = LogsClient(endpoint_url=endpoint_url, region=region)
        self.client = client
        self.id = f"cloudwatch://{group_prefix}"
        self.display = self.id
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.event_columns = event_columns
        self._pool = (
            ThreadPoolExecutor(read_ahead, thread_name_prefix="cw-read") if read_ahead else None
        )
        self._landed = threading.Event()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
    ) -> CloudWatchSource:
        """Build from ``cloudwatch://GROUP_PREFIX[?streams=a,b&stream_regex=R&start=T]``.

        The URL's ``region=`` wins over ``region``.
        """
        from logferry.cloudwatch.client import LogsClient, RateLimiter

        spec = parse_cloudwatch_url(url)
        client = LogsClient(
            endpoint_url=endpoint_url,
            region=spec.region or region,
            profile=profile,
            limiter=RateLimiter(spec.rates),
        )
        source = cls(
            spec.prefix,
            streams=spec.streams,
            stream_regex=spec.stream_regex,
            start_ms=spec.start_ms,
            client=client,
        )
        source.display = redact_url(url)
        return source

    def selects(self, key: str) -> bool:
        """Whether the prefix and the stream filters still select the partition ``key``."""
        group, stream = split_key(key)
        return group.startswith(self.group_prefix) and self._selected(stream)

    def _selected(self, stream: str) -> bool:
        if self.streams is not None:
            return stream in self.streams
        return self.stream_regex is None or self.stream_regex.search(stream) is not None

    def partitions(self) -> list[PartitionInfo]:
        """Every selected stream of every group under the prefix, as ``GROUP:STREAM``."""
        from logferry.cloudwatch.client import StreamNotFoundError

        parts = []
        for group in self.client.groups(self.group_prefix):
            name = group["logGroupName"]
            try:
                streams = list(self.client.streams(name))
            except StreamNotFoundError:
                continue  # deleted between the two calls
            for s in streams:
                if self._selected(s["logStreamName"]):
                    parts.append(
                        PartitionInfo(
                            key=partition_key(name, s["logStreamName"]),
                            version=str(s.get("creationTime", 0)),
                            size=int(s.get("storedBytes", 0) or 0),
                            last_modified_ms=int(
                                s.get("lastIngestionTime") or s.get("lastEventTimestamp") or 0
                            ),
                        )
                    )
        return parts

    def empty_hint(self) -> str:
        """No stream found: what prefix was looked up, and the likely fix."""
        prefix = self.group_prefix
        n = sum(1 for _ in self.client.groups(prefix))
        groups = f"{n} log group{'' if n == 1 else 's'} begin{'s' if n == 1 else ''}"
        if n:
            if self.streams is not None:
                wanted = f"is named {', '.join(self.streams) or '(none given)'}"
            elif self.stream_regex is not None:
                wanted = f"matches stream_regex {self.stream_regex.pattern!r}"
            else:
                return f"{groups} with {prefix!r}, with no streams yet"
            return f"{groups} with {prefix!r}, but none of their streams {wanted}"
        text = f"no log group name begins with {prefix!r}"
        if prefix and not prefix.startswith("/"):
            if next(iter(self.client.groups("/" + prefix)), None) is not None:
                return f"{text}; did you mean cloudwatch:///{prefix} (three slashes: groups under '/{prefix}' exist)?"
            return f"{text}; names like /aws/lambda/… begin with '/': cloudwatch:///{prefix}"
        return f"{text}; `logferry cloudwatch groups` lists the groups of this region"

    def open(
        self,
        part: PartitionInfo,
        cursor: Cursor | None,
        position: int,
        decoder: StreamDecoder | None = None,
    ) -> StreamPartition:
        """Resume ``part`` right after ``cursor`` (None: from ``start``, or the stream's head)."""
        from logferry.cloudwatch.reader import MAX_PAGE, StreamReader

        group, stream = split_key(part.key)
        saved = cursor if isinstance(cursor, StreamCursor) else None
        reader = StreamReader(
            self.client, group, stream, saved, start=self.start_ms,
            page_size=self.page_size or MAX_PAGE,
        )  # fmt: skip
        partition = CloudWatchPartition(
            reader, decoder or StreamDecoder("lines"), part.key, self.event_columns
        )
        if self._pool is None:
            return partition
        return ReadAheadPartition(partition, self._pool, self._landed, self.poll_interval)

    def wait(self, timeout: float) -> None:
        """Until a page fetched ahead lands (or ``timeout``)."""
        if self._pool is None:
            time.sleep(timeout)
            return
        self._landed.wait(timeout)
        self._landed.clear()

    def close(self) -> None:
        """Stop the read-ahead threads (a fetch in flight is abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class CloudWatchOptions(BaseModel):
    """Where the CloudWatch Logs API is (a test endpoint; default: AWS's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = None
    #: AWS profile and region (None: the AWS defaults; the URL's ``region=`` wins).
    profile: str | None = None
    region: str | None = None


def _check(url: str, options: CloudWatchOptions) -> None:
    parse_cloudwatch_url(url)


def _open(url: str, options: CloudWatchOptions) -> CloudWatchSource:
    return CloudWatchSource.from_url(
        url, endpoint_url=options.endpoint_url, profile=options.profile, region=options.region
    )


COMPONENT = Component(
    name="cloudwatch",
    kind="stream",
    schemes=("cloudwatch",),
    options=CloudWatchOptions,
    check=_check,
    open=_open,
    usage="cloudwatch://GROUP_PREFIX[?streams=A,B]",
    summary="the log streams of CloudWatch Logs groups, followed",
)
