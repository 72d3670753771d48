"""``cloudwatch download``: a CloudWatch source and a per-stream file sink on the stream engine.

The :class:`~logferry.engine.streams.StreamRunner` does the work: it lists and claims the
streams (two downloads on one directory never write the same stream), reads them ahead in
``concurrency`` threads under one rate limiter, writes each page to the stream's file
(:class:`~logferry.sinks.stream_files.StreamFileSink`, fsynced) and only then checkpoints
the events written and the forward token in the directory's own ledger. After ``kill -9``
the next run cuts each file back to what the ledger acknowledged and reads on from its
cursor: no gap, no repeated line. This module resolves the options, reloads them on SIGHUP
and reports.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from logferry.cloudwatch.client import LogsClient, RateLimiter
from logferry.cloudwatch.layout import STATE_DIR, encode_json, encode_lines, key_relpath
from logferry.cloudwatch.migrate import migrate_state_files, refuse_earlier_daemon
from logferry.cloudwatch.reader import MAX_PAGE
from logferry.cloudwatch.status import SOURCE_ID, DaemonStatus, ledger_path
from logferry.config import ShipOptions
from logferry.engine.results import Progress
from logferry.engine.routing import Router
from logferry.engine.streams import StreamRunner
from logferry.errors import ConfigError, LogferryError
from logferry.ledger import SQLiteLedger
from logferry.sinks.stream_files import StreamFileSink
from logferry.sources.cloudwatch import CloudWatchSource
from logferry.sources.stream import PartitionInfo
from logferry.timeparse import parse_time
from logferry.yamlfile import load_yaml_limited

#: The environment names of the original downloader, mapped to our option names.
ENV_NAMES = {
    "AWS_LOGS_DIRECTORY": "dir",
    "LOG_GROUP_NAME_PREFIX": "group_prefix",
    "LOG_STREAMS_FILTER": "streams",
}


@dataclass(frozen=True)
class DownloadOptions:
    """Everything ``cloudwatch download`` can be told, from flags, environment or YAML."""

    group_prefix: str | None = None
    streams: tuple[str, ...] | None = None
    stream_regex: str | None = None
    dir: str | None = None
    follow: bool = False
    start: str | None = None
    json: bool = False
    concurrency: int = 8
    get_rate: float = 25.0
    describe_rate: float = 5.0
    discover_interval: float = 60.0
    poll_interval: float = 5.0
    page_size: int = MAX_PAGE
    status_port: int | None = None
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None

    def matches(self, stream: str) -> bool:
        """Whether the stream filters select ``stream``."""
        if self.streams is not None:
            return stream in self.streams
        if self.stream_regex:
            return re.search(self.stream_regex, stream) is not None
        return True

    @property
    def start_ms(self) -> int | None:
        """``start`` as epoch ms (relative times count from now)."""
        return None if self.start is None else parse_time(self.start)


_FIELDS = {f.name for f in fields(DownloadOptions)}


def _coerce(name: str, value: Any) -> Any:
    if name == "streams" and value is not None:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(s.strip() for s in items if str(s).strip())
    if name == "dir" and value is not None:
        return str(value)
    return value


def resolve_options(
    flags: Mapping[str, Any], config_file: str | None, env: Mapping[str, str]
) -> DownloadOptions:
    """Defaults, then the YAML file, then the environment, then flags given on the command line."""
    merged: dict[str, Any] = {}
    if config_file:
        try:
            text = Path(config_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {config_file}: {exc.strerror}") from None
        loaded = load_yaml_limited(text, config_file) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping of option: value")
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(
                    f"{config_file}: unknown option {key!r} (known: {', '.join(sorted(_FIELDS))})"
                )
            merged[name] = value
    for env_name, name in ENV_NAMES.items():
        if env.get(env_name):
            merged[name] = env[env_name]
    merged.update({k: v for k, v in flags.items() if v is not None})
    try:
        options = DownloadOptions(**{k: _coerce(k, v) for k, v in merged.items()})
    except TypeError as exc:
        raise ConfigError(f"bad download configuration: {exc}") from None
    validate(options)
    return options


def validate(options: DownloadOptions) -> None:
    """Raise ConfigError for options that cannot work together."""
    if options.group_prefix is None:
        raise ConfigError(
            "no log group prefix: pass --group-prefix, set LOG_GROUP_NAME_PREFIX or group_prefix in --config"
        )
    if not options.dir:
        raise ConfigError("no directory: pass --dir, set AWS_LOGS_DIRECTORY or dir in --config")
    if options.streams is not None and options.stream_regex:
        raise ConfigError("--streams and --stream-regex exclude each other: pick one")
    if options.stream_regex:
        try:
            re.compile(options.stream_regex)
        except re.error as exc:
            raise ConfigError(f"--stream-regex {options.stream_regex!r}: {exc}") from None
    if options.start is not None:
        parse_time(options.start)
    if options.concurrency < 1 or options.page_size < 1:
        raise ConfigError("--concurrency and --page-size must be at least 1")
    if options.get_rate <= 0 or options.describe_rate <= 0:
        raise ConfigError("--get-rate and --describe-rate must be positive")


def _rates(options: DownloadOptions) -> RateLimiter:
    return RateLimiter(
        {
            "GetLogEvents": options.get_rate,
            "DescribeLogStreams": options.describe_rate,
            "DescribeLogGroups": options.describe_rate,
        }
    )


class DownloadSource(CloudWatchSource):
    """The streams a download selects: filters a reload changes, news of streams found later.

    Its ledger id is the same whatever the prefix, so a reload never starts a stream over.
    """

    def __init__(
        self,
        options: DownloadOptions,
        client: LogsClient,
        notice: Callable[[str], None],
        reload: Callable[[], DownloadOptions] | None,
    ) -> None:
        super().__init__(
            options.group_prefix or "",
            streams=list(options.streams) if options.streams is not None else None,
            stream_regex=options.stream_regex,
            start_ms=options.start_ms,
            client=client,
            page_size=options.page_size,
            read_ahead=options.concurrency,
            poll_interval=options.poll_interval if options.follow else None,
            event_columns=True,
        )
        self.id = SOURCE_ID
        self.display = f"cloudwatch://{options.group_prefix}"
        self.options = options
        self.known: set[str] | None = None
        self.listing_error: str | None = None
        self.reload_requested = threading.Event()
        self._reload = reload
        self._notice = notice

    def partitions(self) -> list[PartitionInfo]:
        """The selected streams now (after applying a requested reload)."""
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self._apply_reload()
        try:
            parts = super().partitions()
        except LogferryError as exc:
            self.listing_error = str(exc)
            raise
        self.listing_error = None
        keys = {p.key for p in parts}
        if self.known is not None:  # the first listing is the starting set, not news
            for key in sorted(keys - self.known):
                self._notice(f"new stream {key}")
        self.known = keys
        return parts

    def _apply_reload(self) -> None:
        if self._reload is None:
            return
        try:
            fresh = self._reload()
        except LogferryError as exc:
            self._notice(f"reload failed, keeping the current configuration: {exc}")
            return
        self.options = fresh
        self.group_prefix = fresh.group_prefix or ""
        self.streams = list(fresh.streams) if fresh.streams is not None else None
        self.stream_regex = re.compile(fresh.stream_regex) if fresh.stream_regex else None
        self.client.limiter = _rates(fresh)
        self._notice(
            f"reloaded: group prefix {fresh.group_prefix!r}, "
            + (
                f"streams {','.join(fresh.streams)}"
                if fresh.streams is not None
                else f"stream regex {fresh.stream_regex!r}"
                if fresh.stream_regex
                else "all streams"
            )
        )


class _Notices(Progress):
    """The runner's notices (failures, held streams) to the user; counts streams taken."""

    unit = "streams"

    def __init__(self, notice: Callable[[str], None]) -> None:
        self.notice = notice
        self.streams = 0

    def object_started(self, obj: Any) -> None:
        self.streams += 1

    def message(self, text: str) -> None:
        self.notice(text)


@dataclass
class DownloadResult:
    """What one run of the download did."""

    streams: int = 0
    events: int = 0
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False


class Downloader:
    """Downloads the selected streams into one file each, driven by the stream engine."""

    def __init__(
        self,
        options: DownloadOptions,
        *,
        reload: Callable[[], DownloadOptions] | None = None,
        notice: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.options = options
        self.root = Path(options.dir or ".")
        self.stop_event = threading.Event()
        self.client = LogsClient(
            endpoint_url=options.endpoint_url,
            region=options.region,
            profile=options.profile,
            limiter=_rates(options),
            pool_size=options.concurrency + 2,
        )
        # What the directory's files already are: every reload keeps the place and format.
        fresh = (
            None
            if reload is None
            else (lambda: replace(reload(), dir=options.dir, json=options.json))
        )
        self.source = DownloadSource(options, self.client, notice, fresh)
        self.progress = _Notices(notice)
        self._notice = notice
        self.runner: StreamRunner | None = None

    def stop(self) -> None:
        """Finish the pages in flight, checkpoint them, close every file, return."""
        self.stop_event.set()

    def request_reload(self) -> None:
        """Re-read the configuration (SIGHUP) and list the streams again."""
        self.source.reload_requested.set()
        if self.runner is not None:
            self.runner.request_discovery()

    def run(self) -> DownloadResult:
        """Run until caught up (or, with ``follow``, until stopped)."""
        o = self.options
        (self.root / STATE_DIR).mkdir(parents=True, exist_ok=True)
        refuse_earlier_daemon(self.root)
        ledger = SQLiteLedger(ledger_path(self.root))
        sink = StreamFileSink(
            self.root,
            layout=functools.partial(key_relpath, as_json=o.json),
            encode=encode_json if o.json else encode_lines,
        )
        status = DaemonStatus(self.root, self.info)
        try:
            migrate_state_files(self.root, ledger, self._notice)
            ship = ShipOptions(
                follow=o.follow,
                batch_lines=o.page_size,
                batch_wait=0.2,
                # A daemon keeps retrying a stream it cannot read for now (an outage).
                max_attempts=1_000_000 if o.follow else 5,
            )
            self.runner = StreamRunner(
                self.source, Router.to_all([sink], "lines"), ledger, ship,
                progress=self.progress, stop=self.stop_event,
                discover_interval=o.discover_interval,
            )  # fmt: skip
            status.start(o.status_port)
            if status.port is not None:
                self._notice(f"status on http://127.0.0.1:{status.port}/status")
            shipped = self.runner.run()
        finally:
            status.stop()
            self.source.close()
            sink.close()
            ledger.close()
        result = DownloadResult(
            streams=self.progress.streams,
            events=shipped.lines,
            bytes=shipped.bytes,
            failed={f.key: f.error for f in shipped.failed},
            interrupted=shipped.interrupted or (o.follow and self.stop_event.is_set()),
        )
        if self.source.listing_error and not o.follow:
            result.failed[self.source.display] = f"listing failed: {self.source.listing_error}"
        if shipped.held:
            result.failed.setdefault("held", f"{shipped.held} streams could not be written")
        return result

    def info(self) -> dict[str, Any]:
        """Live counters for the status document and port."""
        o = self.source.options
        stats = self.client.stats
        shipped = self.runner.result if self.runner is not None else None
        return {
            "group_prefix": o.group_prefix,
            "streams_filter": list(o.streams) if o.streams is not None else None,
            "stream_regex": o.stream_regex,
            "follow": o.follow,
            "streams_known": len(self.source.known or ()),
            "events": shipped.lines if shipped else 0,
            "requests": stats.requests,
            "throttled": stats.throttled,
            "retries": stats.retries,
            "failed": {f.key: f.error for f in shipped.failed} if shipped else {},
        }
