"""Validated options for a shipping run (pydantic), shared by the CLI and the library."""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from logferry.errors import ConfigError, ConfigErrors, LogferryError

Mode = Literal["catchup", "key", "latest", "all"]
"""catchup: everything not done; key: the objects named in ``keys``; latest: the N newest
not done; all: everything again."""

MiB = 1024 * 1024


def check_timezone(name: str) -> None:
    """Refuse zone names zoneinfo does not know (syslog lines are read in that zone)."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown syslog timezone {name!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None


class ShipOptions(BaseModel):
    """How one ``ship`` run reads, batches and claims objects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "catchup"
    keys: tuple[str, ...] = ()
    latest: int | None = Field(default=None, ge=1)
    format: str = "auto"
    expand: str | None = None
    timestamp_fields: tuple[str, ...] = ("timestamp", "@timestamp", "time", "ts")
    max_document_bytes: int = Field(default=256 * MiB, ge=1024)
    #: Decoding: longest line kept (longer ones are truncated); largest record of a document.
    #: (The sinks' own ``max_line_bytes`` is what they send at most per line.)
    max_record_bytes: int = Field(default=MiB, ge=1024)
    #: Decoding: an object decompressing to more fails (0: no limit).
    max_decompressed_bytes: int = Field(default=0, ge=0)
    #: Decoding: an object expanding more than this ratio past 64 MiB fails (0: no limit).
    max_decompression_ratio: int = Field(default=1000, ge=0)
    #: Decoding: largest zstd window accepted (2 GiB: ``zstd --long=31``).
    max_zstd_window: int = Field(default=2**31, ge=1 << 20)
    syslog_timezone: str = "UTC"
    workers: int = Field(default=4, ge=1, le=64)
    batch_lines: int = Field(default=10_000, ge=1)
    batch_bytes: int = Field(default=2 * MiB, ge=1024)
    batch_wait: float = Field(default=1.0, gt=0)
    lease_seconds: float = Field(default=120.0, ge=1)
    read_chunk: int = Field(default=MiB, ge=4096)
    force: bool = False
    max_attempts: int = Field(default=5, ge=1)
    retry_delay: float = Field(default=2.0, ge=0)
    #: A one-off run gives up on a sink that keeps failing after this many seconds (the
    #: object or partition waits for the next run); followed runs retry without end.
    retry_timeout: float = Field(default=60.0, gt=0)
    #: The first retry of a failing sink waits about this long; later ones double it (with
    #: jitter) up to 30 s, a minute when following.
    retry_backoff: float = Field(default=0.5, gt=0)
    #: Streams: keep following (True) or read to the current end and stop.
    follow: bool = False
    #: Streams: where files seen for the first time start.
    start: Literal["beginning", "end"] = "beginning"
    #: Array jobs: this runner takes the keys whose stable hash is ``shard_index`` modulo
    #: ``shard_count``; the shards together cover every key exactly once.
    shard_index: int = Field(default=0, ge=0)
    shard_count: int = Field(default=1, ge=1)
    #: Buckets: only objects that may hold events at or after / before these (UTC epoch
    #: ms), judged by the time in the key where it has one, else LastModified.
    since: int | None = None
    until: int | None = None
    #: Buckets with ``follow``: seconds between listings.
    interval: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _mode_arguments(self) -> ShipOptions:
        if self.mode == "key" and not self.keys:
            raise ValueError("mode 'key' needs at least one key")
        if self.mode == "latest" and not self.latest:
            raise ValueError("mode 'latest' needs a count")
        if self.shard_index >= self.shard_count:
            raise ValueError("shard_index must be below shard_count")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        check_timezone(self.syslog_timezone)
        return self


class SinkOptions(BaseModel):
    """Options shared by the sinks that use them; each sink takes the fields it declares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str = "logferry"
    hostname: str | None = None
    tags: str | None = None
    max_line_bytes: int = Field(default=32 * 1024, ge=256)
    verify_tls: bool = True
    #: Let credentials travel over plain http:// to hosts other than loopback.
    allow_insecure_http: bool = False


def build(model: type[BaseModel], **values: object) -> BaseModel:
    """Validate ``values`` into ``model``, turning pydantic errors into one-line ConfigErrors."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "options"
        raise ConfigError(f"invalid {where}: {first.get('msg', 'invalid value')}") from None


# -- pipeline files (``logferry run -c pipeline.yaml``) ------------------------------------

DROP = "drop"


DEFAULT_STORE_SINK = "store"


def default_store_url() -> str:
    """The embedded DuckDB store: ``$LOGFERRY_STORE`` or ``store.db`` in the state directory."""
    if os.environ.get("LOGFERRY_STORE"):
        return os.environ["LOGFERRY_STORE"]
    import platformdirs

    return f"duckdb:///{Path(platformdirs.user_state_dir('logferry')) / 'store.db'}"


class SinkConfig(BaseModel):
    """A named sink: a URL (``mezmo+https://…``, ``logdna:REGION``, ``file:///DIR``, ``-``)
    or ``type: python`` with a user handler class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    type: Literal["url", "python"] = "url"
    handler: str | None = Field(default=None, pattern=r"^[\w.]+:[\w]+$")
    args: dict[str, Any] = Field(default_factory=dict)
    app: str = "logferry"
    hostname: str | None = None
    tags: str | list[str] | None = None
    max_line_bytes: int = Field(default=32 * 1024, ge=256)
    verify_tls: bool = True
    allow_insecure_http: bool = False
    #: Streams: this sink's own batches (unset: the pipeline's ``batch_*``).
    batch_lines: int | None = Field(default=None, ge=1)
    batch_bytes: int | None = Field(default=None, ge=1024)
    batch_wait: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _url_or_handler(self) -> SinkConfig:
        if self.type == "python":
            if not self.handler:
                raise ValueError("a python sink needs `handler: package.module:Class`")
        elif not self.url:
            raise ValueError("a sink needs a `url` (or `type: python` with a `handler`)")
        return self

    def options(self) -> SinkOptions:
        """The URL sink options."""
        tags = ",".join(self.tags) if isinstance(self.tags, list) else self.tags
        return SinkOptions(
            app=self.app,
            hostname=self.hostname,
            tags=tags,
            max_line_bytes=self.max_line_bytes,
            verify_tls=self.verify_tls,
            allow_insecure_http=self.allow_insecure_http,
        )


class RouteConfig(BaseModel):
    """Objects whose key starts with ``prefix`` (the longest match wins) go to ``sinks``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = ""
    format: str | list[str] = "auto"
    expand: str | None = None
    timestamp_fields: tuple[str, ...] | None = None
    syslog_timezone: str | None = None
    sinks: list[str] | Literal["drop"]

    @model_validator(mode="after")
    def _zone(self) -> RouteConfig:
        if self.syslog_timezone is not None:
            check_timezone(self.syslog_timezone)
        return self

    @property
    def formats(self) -> tuple[str, ...]:
        """The format chain: tried in order on objects that do not decode."""
        return (self.format,) if isinstance(self.format, str) else tuple(self.format)


class SourceConfig(BaseModel):
    """A named bucket source and its routes (``sinks``/``format`` give a catch-all route)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    #: Optional, for readers of the file: a source scheme of the registry (``s3``, ``tail``,
    #: …) that must agree with the URL's.
    type: str | None = None
    endpoint_url: str | None = None
    verify_tls: bool = True
    #: AWS profile and region for s3:// and cloudwatch:// (None: the AWS defaults).
    profile: str | None = None
    region: str | None = None
    #: Bucket sources: only objects with events in [since, until) (``2h ago``, ISO 8601, …),
    #: by the time in the key where it has one, else LastModified.
    since: str | None = None
    until: str | None = None
    #: tail sources: where files seen for the first time start (later files: the beginning).
    start: Literal["beginning", "end"] = "beginning"
    format: str | list[str] = "auto"
    sinks: list[str] | Literal["drop"] | None = None
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        from logferry import registry

        types = [s for s in registry.schemes("source") if s not in ("", "-")]
        if value is not None and value not in types:
            raise ValueError(f"unknown source type {value!r}: use one of {', '.join(types)}")
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _time_text(cls, value: Any) -> Any:
        # YAML reads 2024-05-01T12:00:00Z as a datetime and 1714560000 as an int.
        if isinstance(value, (datetime.date, int)) and not isinstance(value, bool):
            if isinstance(value, datetime.datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=datetime.UTC)
            return value.isoformat() if isinstance(value, datetime.date) else str(value)
        return value

    @field_validator("since", "until")
    @classmethod
    def _readable_time(cls, value: str | None) -> str | None:
        if value is not None:
            from logferry.timeparse import parse_time

            try:
                parse_time(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _times_of_buckets(self) -> SourceConfig:
        if self.since is not None or self.until is not None:
            from logferry.sources import is_stream_url

            if is_stream_url(self.url):
                raise ValueError("`since` and `until` select objects of buckets, not streams")
        return self

    def time_range(self, now_ms: int | None = None) -> dict[str, int]:
        """``since`` / ``until`` as ShipOptions fields (epoch ms; relative to ``now_ms``)."""
        from logferry.timeparse import parse_time

        return {
            name: parse_time(text, now_ms=now_ms)
            for name, text in (("since", self.since), ("until", self.until))
            if text is not None
        }

    @model_validator(mode="after")
    def _type_matches_url(self) -> SourceConfig:
        if self.type is not None:
            from logferry import registry
            from logferry.redact import redact_url

            # A plain path is a file:// source: the scheme-less component answers for both.
            scheme = registry.scheme_of(self.url, "source")
            component = registry.lookup(self.url, "source")
            if (
                component is None
                or self.type not in component.schemes
                or scheme
                not in (
                    "",
                    self.type,
                )
            ):
                raise ValueError(
                    f"type {self.type!r} does not match the URL {redact_url(self.url)!r}"
                )
        return self

    def all_routes(self) -> list[RouteConfig]:
        """Explicit routes plus the catch-all one from ``sinks``/``format``, if given."""
        routes = list(self.routes)
        if self.sinks is not None and not any(r.prefix == "" for r in routes):
            routes.append(RouteConfig(prefix="", format=self.format, sinks=self.sinks))
        return routes


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)


def parse_size(value: object) -> object:
    """Bytes from a number or text such as ``100MB`` (10⁶) or ``1.5GiB`` (2³⁰); other values
    are left for the field's own validation to refuse."""
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size: write bytes, or e.g. 100MB, 1GiB")
    number, unit, binary = match.groups()
    power = "kmgt".find(unit.lower()) + 1 if unit else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


ByteSize = Annotated[int, BeforeValidator(parse_size)]


class LaneConfig(BaseModel):
    """A worker lane for big objects: its own queue, consumers and visibility timeout.

    Consumers of the main queue forward objects of ``min_size`` bytes or more to this
    lane's queue, so that one huge object never holds up the small ones behind it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str
    min_size: ByteSize = Field(ge=1)
    concurrency: int = Field(default=1, ge=1, le=64)
    #: None: the queue URL's own, else the worker's.
    visibility_timeout: float | None = Field(default=None, gt=0)
    max_deliveries: int | None = Field(default=None, ge=1)
    dead_letter: str | None = None


class WorkerConfig(BaseModel):
    """``worker:`` in a pipeline file: how ``logferry worker`` consumes notifications."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The queue of object notifications (``--queue`` overrides it).
    queue: str | None = None
    concurrency: int = Field(default=4, ge=1, le=64)
    #: None: the queue URL's own (``?visibility_timeout=``), else the queue's default.
    visibility_timeout: float | None = Field(default=None, gt=0)
    max_deliveries: int | None = Field(default=None, ge=1)
    dead_letter: str | None = None
    #: Seconds a sink may keep asking to retry within one delivery before the message is
    #: given back to the queue (which delivers it again later).
    retry_timeout: float = Field(default=30.0, gt=0)
    #: First delay before a message given back is delivered again; doubles per delivery.
    retry_delay: float = Field(default=2.0, ge=0)
    retry_delay_cap: float = Field(default=300.0, ge=0)
    lanes: dict[str, LaneConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct_lanes(self) -> WorkerConfig:
        queues = [lane.queue for lane in self.lanes.values()]
        if self.queue is not None:
            queues.append(self.queue)
        if len(queues) != len(set(queues)):
            raise ValueError("every lane needs a queue of its own")
        sizes = [lane.min_size for lane in self.lanes.values()]
        if len(sizes) != len(set(sizes)):
            raise ValueError("two lanes have the same min_size")
        for name in self.lanes:
            if name == "main" or not re.fullmatch(r"[A-Za-z][\w-]{0,31}", name):
                raise ValueError(f"lane name {name!r}: use letters, digits, - and _ (not 'main')")
        return self


class PipelineConfig(BaseModel):
    """A pipeline file: sources with routes, named sinks, the ledger and run settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ledger: str | None = None
    interval: float = Field(default=60.0, gt=0, description="seconds between listings (run)")
    workers: int = Field(default=4, ge=1, le=64)
    max_attempts: int = Field(default=5, ge=1)
    batch_bytes: int = Field(default=2 * MiB, ge=1024, description="log bytes per checkpoint")
    batch_lines: int = Field(default=10_000, ge=1, description="records per batch at most")
    batch_wait: float = Field(default=1.0, gt=0, description="streams: seconds a record waits")
    max_record_bytes: int = Field(default=MiB, ge=1024, description="decoding: longest line")
    max_decompressed_bytes: int = Field(default=0, ge=0, description="0: no limit")
    max_decompression_ratio: int = Field(default=1000, ge=0, description="0: no limit")
    max_zstd_window: int = Field(default=2**31, ge=1 << 20)
    sinks: dict[str, SinkConfig] = Field(default_factory=dict)
    sources: dict[str, SourceConfig]
    #: ``logferry worker``'s settings (ignored by ``run``).
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    #: Where the file was read from, and the line of every path in it (set by parse_pipeline).
    _location: str | None = PrivateAttr(default=None)
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)

    def problem(self, path: tuple[Any, ...], message: str) -> str:
        """``FILE:LINE: path: message`` for a problem found after parsing."""
        return _where(self._location or "<config>", self._lines, path, message)

    @property
    def base_dir(self) -> Path | None:
        """The folder of a pipeline read from a local file (handler modules import from it)."""
        if self._location is None or "://" in self._location or self._location.startswith("<"):
            return None
        return Path(self._location).expanduser().resolve().parent

    @model_validator(mode="before")
    @classmethod
    def _default_store(cls, data: Any) -> Any:
        # A source that names no sinks and no routes goes to the embedded store.
        if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
            return data
        bare = [
            name
            for name, src in data["sources"].items()
            if isinstance(src, dict) and src.get("sinks") is None and not src.get("routes")
        ]
        if not bare:
            return data
        sinks = dict(data.get("sinks") or {})
        sinks.setdefault(DEFAULT_STORE_SINK, {"url": default_store_url()})
        sources = {
            name: ({**src, "sinks": [DEFAULT_STORE_SINK]} if name in bare else src)
            for name, src in data["sources"].items()
        }
        return {**data, "sinks": sinks, "sources": sources}

    @model_validator(mode="after")
    def _references(self) -> PipelineConfig:
        from logferry.codecs.formats import FORMATS

        problems: list[tuple[tuple[Any, ...], str]] = []
        if not self.sources:
            problems.append((("sources",), "no sources: add at least one under `sources:`"))
        for name, source in self.sources.items():
            at: tuple[Any, ...] = ("sources", name)
            if not source.all_routes():
                problems.append((at, "no routes: give the source `sinks:` or a list of `routes:`"))
            prefixes = [r.prefix for r in source.routes]
            if len(prefixes) != len(set(prefixes)):
                problems.append(((*at, "routes"), "two routes have the same prefix"))
            for i, route in enumerate(source.all_routes()):
                where = (*at, "routes", i) if i < len(source.routes) else at
                for fmt in route.formats:
                    if fmt not in FORMATS and fmt != "auto":
                        valid = ", ".join(sorted({"auto", *FORMATS}))
                        problems.append(
                            ((*where, "format"), f"unknown format {fmt!r}: use {valid}")
                        )
                if route.sinks != DROP:
                    for sink in route.sinks:
                        if sink not in self.sinks:
                            known = ", ".join(sorted(self.sinks)) or "none defined"
                            problems.append(
                                (
                                    (*where, "sinks"),
                                    f"unknown sink {sink!r} (defined: {known}; or `drop`)",
                                )
                            )
        if problems:
            raise PathError(problems)
        return self


class PathError(ValueError):
    """Validation errors that know where in the file they belong: ``(path, message)`` each."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def parse_pipeline(
    text: str, where: str = "<config>", env: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Validate a pipeline YAML; errors are one line: ``FILE:LINE: path: what is wrong``."""
    from logferry.yamlfile import load_yaml_limited

    env = os.environ if env is None else env
    lines: dict[tuple[Any, ...], int] = {}
    data = load_yaml_limited(text, where, env=env, lines=lines)
    if data is None:
        raise ConfigError(
            f"{where}: the file is empty; see examples/pipeline.yaml and docs/configuration.md"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{where}:1: a pipeline is a mapping with `sources:` and `sinks:`")
    try:
        config = PipelineConfig(**data)
    except ValidationError as exc:
        problems: list[tuple[tuple[Any, ...], str]] = []
        for error in exc.errors():
            loc = tuple(error.get("loc", ()))
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, PathError):
                problems += [((*loc, *path), message) for path, message in cause.problems]
            else:
                problems.append((loc, error.get("msg", "invalid value")))
        raise ConfigErrors([_where(where, lines, loc, m) for loc, m in problems]) from None
    except TypeError as exc:  # non-string keys and the like
        raise ConfigError(f"{where}:1: {exc}") from None
    config._location, config._lines = where, lines
    return config


def _where(
    where: str, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...], message: str
) -> str:
    """``FILE:LINE: path: message`` for one problem (the line of the closest known path)."""
    lineno = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), 1)
    path = ".".join(str(p) for p in loc if not str(p).startswith("function-after"))
    message = message.removeprefix("Value error, ")
    return f"{where}:{lineno}: {path + ': ' if path else ''}{message}"


def load_pipeline(location: str, env: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline file from a path or an ``s3://BUCKET/KEY`` URL."""
    from logferry.yamlfile import MAX_YAML_BYTES

    if location.startswith(("s3://", "cos://")):
        from logferry.sources import open_source

        bucket_url, _, key = location.partition("://")[2].partition("/")
        source = open_source(f"{location.split('://')[0]}://{bucket_url}")
        try:
            data = bytearray()
            for chunk in source.open(source.head(key)):
                data += chunk
                if len(data) > MAX_YAML_BYTES:
                    break  # the size check below names the limit
        except LogferryError as exc:
            raise ConfigError(f"cannot read pipeline {location}: {exc}") from None
        finally:
            source.close()
    else:
        try:
            with Path(location).expanduser().open("rb") as file:
                data = bytearray(file.read(MAX_YAML_BYTES + 1))
        except OSError as exc:
            raise ConfigError(f"cannot read pipeline {location}: {exc.strerror}") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{location}: more than the {MAX_YAML_BYTES:,} bytes a pipeline file may have: refused"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{location}: not UTF-8 text (byte {exc.start})") from None
    return parse_pipeline(text, location, env)
