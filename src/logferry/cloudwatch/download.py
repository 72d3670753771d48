"""The download daemon: every (group, stream) to its own local file, resumable without gaps.

Per stream, one page at a time: append the lines, flush and fsync, *then* replace the state
file (cursor, events, file size) atomically. A crash between the two leaves lines past the
recorded size; the next run truncates the file back to that size and reads them again, so a
restart neither loses nor repeats a line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from logferry.cloudwatch.client import LogsClient, RateLimiter, StreamNotFoundError
from logferry.cloudwatch.reader import MAX_PAGE, StreamCursor, StreamReader
from logferry.cloudwatch.state import (
    HEARTBEAT_SECONDS,
    StateStore,
    StreamState,
    collect_status,
    stream_relpath,
)
from logferry.cloudwatch.timeparse import parse_time
from logferry.errors import ConfigError, LogferryError

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
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read {config_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{config_file} is not valid YAML: {str(exc).splitlines()[0]}"
            ) from None
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


def encode_events(events: list[dict[str, Any]], as_json: bool) -> bytes:
    """One line per event: the message (embedded newlines written as ``\\n``) or a JSON object."""
    if as_json:
        return b"".join(
            orjson.dumps(
                {
                    "timestamp": e["timestamp"],
                    "ingestionTime": e.get("ingestionTime"),
                    "message": e["message"],
                }
            )
            + b"\n"
            for e in events
        )
    # Keep one event per line so line counts and the resume offset stay exact; --json is lossless.
    return "".join(e["message"].rstrip("\r\n").replace("\n", "\\n") + "\n" for e in events).encode()


@dataclass(eq=False)  # identity: the loop keeps them in sets
class _Stream:
    group: str
    name: str
    created_ms: int
    due: float = 0.0
    caught_up: bool = False


@dataclass
class DownloadResult:
    """What one run of the daemon did."""

    streams: int = 0
    events: int = 0
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False


class Downloader:
    """Follows the streams of the chosen groups into one file each, under one rate limiter."""

    def __init__(
        self,
        options: DownloadOptions,
        *,
        reload: Callable[[], DownloadOptions] | None = None,
        notice: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.options = options
        self.root = Path(options.dir or ".")
        self.store = StateStore(self.root)
        self.stop_event = threading.Event()
        self._reload_fn = reload
        self._reload_requested = threading.Event()
        self._notice = notice
        self.limiter = RateLimiter(
            {
                "GetLogEvents": options.get_rate,
                "DescribeLogStreams": options.describe_rate,
                "DescribeLogGroups": options.describe_rate,
            }
        )
        self.client = LogsClient(
            endpoint_url=options.endpoint_url,
            region=options.region,
            limiter=self.limiter,
            pool_size=options.concurrency + 2,
        )
        self.result = DownloadResult()
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._started_ms = int(time.time() * 1000)
        self._http: ThreadingHTTPServer | None = None
        self._announce_new = False
        self.status_port: int | None = None

    # -- control from other threads (signal handlers) --------------------------------------

    def stop(self) -> None:
        """Finish the pages in flight, save their state, close every file, return."""
        self.stop_event.set()

    def request_reload(self) -> None:
        """Re-read the configuration (SIGHUP) at the next loop turn."""
        self._reload_requested.set()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> DownloadResult:
        """Run until caught up (or, with ``follow``, until stopped)."""
        self.store.ensure()
        lock = self._take_lock()
        heartbeat = threading.Thread(target=self._heartbeat, name="cw-heartbeat", daemon=True)
        try:
            self._start_http()
            self._write_daemon()
            heartbeat.start()
            self._loop()
        finally:
            self.stop_event.set()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
            self._write_daemon(stopped=True)
            lock.close()
        return self.result

    def _loop(self) -> None:
        next_discovery = 0.0
        discovered_once = False
        in_flight: dict[Future[bool], _Stream] = {}
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="cw-dl") as pool:
            while not self.stop_event.is_set():
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self._reload()
                    next_discovery = 0.0
                now = time.monotonic()
                if now >= next_discovery and (self.options.follow or not discovered_once):
                    discovered_once = self._discover() or discovered_once
                    next_discovery = now + self.options.discover_interval
                busy = set(in_flight.values())
                for st in list(self._streams.values()):
                    if st in busy or st.due > now:
                        continue
                    if not self.options.follow and st.caught_up:
                        continue
                    in_flight[pool.submit(self._download, st, self.options)] = st
                if not self.options.follow and discovered_once and not in_flight:
                    break
                done, _ = wait(list(in_flight), timeout=0.2, return_when=FIRST_COMPLETED)
                if not in_flight:
                    self.stop_event.wait(0.2)
                for fut in done:
                    st = in_flight.pop(fut)
                    self._finished(st, fut)
            self.result.interrupted = self.options.follow or bool(in_flight)
            for fut in list(in_flight):
                self._finished(in_flight.pop(fut), fut, wait_result=True)

    def _finished(self, st: _Stream, fut: Future[bool], wait_result: bool = False) -> None:
        key = f"{st.group}:{st.name}"
        try:
            caught_up = fut.result() if wait_result else fut.result(timeout=0)
        except StreamNotFoundError:
            self._notice(f"stream {key} is gone; it will be picked up again if it comes back")
            self._streams.pop((st.group, st.name), None)
            return
        except LogferryError as exc:
            self.result.failed[key] = str(exc)
            self._notice(f"failed {key}: {exc}")
            st.due = time.monotonic() + self.options.poll_interval
            st.caught_up = True  # without --follow, a failed stream is not retried in this run
            return
        self.result.failed.pop(key, None)
        st.caught_up = caught_up
        st.due = time.monotonic() + (self.options.poll_interval if caught_up else 0.0)

    def _discover(self) -> bool:
        options = self.options
        found: dict[tuple[str, str], int] = {}
        try:
            for group in self.client.groups(options.group_prefix or ""):
                name = group["logGroupName"]
                try:
                    for stream in self.client.streams(name):
                        if options.matches(stream["logStreamName"]):
                            found[(name, stream["logStreamName"])] = int(
                                stream.get("creationTime", 0)
                            )
                except StreamNotFoundError:
                    continue  # the group went away between the two calls
        except LogferryError as exc:
            if not options.follow:
                raise
            self._notice(f"discovery failed, trying again later: {exc}")
            return False
        with self._lock:
            for key, created in found.items():
                if key not in self._streams:
                    self._streams[key] = _Stream(key[0], key[1], created)
                    if self._announce_new:
                        self._notice(f"new stream {key[0]}:{key[1]}")
                    self.result.streams += 1
            self._announce_new = True  # the first listing is the starting set, not news
        return True

    def _reload(self) -> None:
        if self._reload_fn is None:
            return
        try:
            fresh = self._reload_fn()
        except LogferryError as exc:
            self._notice(f"reload failed, keeping the current configuration: {exc}")
            return
        # The directory and the file format are what existing state describes: keep them.
        fresh = replace(fresh, dir=self.options.dir, json=self.options.json)
        self.options = fresh
        self.limiter = self.client.limiter = RateLimiter(
            {
                "GetLogEvents": fresh.get_rate,
                "DescribeLogStreams": fresh.describe_rate,
                "DescribeLogGroups": fresh.describe_rate,
            }
        )
        with self._lock:
            for key in [k for k in self._streams if not self._selected(k)]:
                del self._streams[key]
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

    def _selected(self, key: tuple[str, str]) -> bool:
        return key[0].startswith(self.options.group_prefix or "") and self.options.matches(key[1])

    # -- one stream -----------------------------------------------------------------------

    def _download(self, st: _Stream, options: DownloadOptions) -> bool:
        """Read ``st`` until caught up or stopped; True when caught up."""
        state = self.store.load(st.group, st.name)
        relpath = stream_relpath(st.group, st.name, as_json=options.json)
        path = self.root / relpath
        if (
            state is not None
            and state.created_ms
            and st.created_ms
            and state.created_ms != st.created_ms
        ):
            self._notice(f"stream {st.group}:{st.name} was re-created: downloading it again")
            state = None
            path.unlink(missing_ok=True)
        if state is None:
            state = StreamState(
                st.group,
                st.name,
                relpath,
                StreamCursor(start=options.start_ms),
                created_ms=st.created_ms,
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            self._align(fh, path, state)
            reader = StreamReader(
                self.client, st.group, st.name, state.cursor, page_size=options.page_size
            )
            while not self.stop_event.is_set():
                page = reader.read()
                if page.events:
                    data = encode_events(page.events, options.json)
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())  # the lines are on disk before the state says so
                    state.size += len(data)
                    state.events += len(page.events)
                    state.last_event_ms = page.events[-1]["timestamp"]
                    with self._lock:
                        self.result.events += len(page.events)
                        self.result.bytes += len(data)
                if page.cursor != state.cursor:
                    state.cursor = page.cursor
                    self.store.save(state)
                if page.caught_up:
                    return True
        return False

    def _align(self, fh: IO[bytes], path: Path, state: StreamState) -> None:
        size = os.fstat(fh.fileno()).st_size
        if size > state.size:
            # Lines written after the last state save: the reader will fetch them again.
            fh.truncate(state.size)
        elif size < state.size:
            self._notice(f"{path} is shorter than its state says (edited?): appending from its end")
            state.size = size

    # -- monitoring -----------------------------------------------------------------------

    def _take_lock(self) -> IO[str]:
        lock = open(self.store.dir / "lock", "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            daemon = self.store.read_daemon() or {}
            raise LogferryError(
                f"another download (pid {daemon.get('pid', '?')}) is writing {self.root}: "
                "stop it first or pick another --dir"
            ) from None
        return lock

    def daemon_info(self) -> dict[str, Any]:
        """The heartbeat document (also served by the status port)."""
        o = self.options
        stats = self.client.stats
        return {
            "pid": os.getpid(),
            "started_ms": self._started_ms,
            "heartbeat_ms": int(time.time() * 1000),
            "status_port": self.status_port,
            "group_prefix": o.group_prefix,
            "streams_filter": list(o.streams) if o.streams is not None else None,
            "stream_regex": o.stream_regex,
            "follow": o.follow,
            "streams_known": len(self._streams),
            "events": self.result.events,
            "requests": stats.requests,
            "throttled": stats.throttled,
            "retries": stats.retries,
            "failed": dict(self.result.failed),
        }

    def _write_daemon(self, stopped: bool = False) -> None:
        info = self.daemon_info()
        if stopped:
            info["stopped_ms"] = info["heartbeat_ms"]
            info["heartbeat_ms"] = 0  # stopped cleanly: not alive
        with contextlib.suppress(OSError):
            self.store.write_daemon(info)

    def _heartbeat(self) -> None:
        while not self.stop_event.wait(HEARTBEAT_SECONDS):
            self._write_daemon()

    def _start_http(self) -> None:
        if self.options.status_port is None:
            return
        downloader = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/", "/status"):
                    self.send_error(404, "try /status")
                    return
                status = collect_status(downloader.root)
                status["daemon"] = {**downloader.daemon_info(), "heartbeat_age_s": 0.0}
                status["alive"] = True
                body = orjson.dumps(status)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # requests are not news

        try:
            self._http = ThreadingHTTPServer(("127.0.0.1", self.options.status_port), Handler)
        except OSError as exc:
            raise ConfigError(f"--status-port {self.options.status_port}: {exc.strerror}") from None
        self.status_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="cw-status", daemon=True).start()
        self._notice(f"status on http://127.0.0.1:{self.status_port}/status")
