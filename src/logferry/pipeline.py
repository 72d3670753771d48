"""Pipelines from a config file: open its sources, sinks and routes; run them once or as a daemon.

``logferry run`` is the daemon: every ``interval`` it catches up each source. SIGHUP
reloads the file: a valid new configuration is applied after the batches in flight are
acknowledged and checkpointed (nothing is lost; the next cycle resumes there), an invalid
one is rejected with a log line and the running configuration carries on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from logferry import registry
from logferry.codecs.formats.base import FormatOptions
from logferry.config import DROP, PipelineConfig, RouteConfig, ShipOptions, SinkConfig, build
from logferry.engine import (
    ObjectRunner,
    Progress,
    Route,
    Router,
    ShipResult,
    StreamRunner,
    one_line,
)
from logferry.engine.objects import format_options_of
from logferry.engine.results import plural
from logferry.errors import ConfigError, ConfigErrors
from logferry.ledger import Ledger
from logferry.redact import redact_url
from logferry.sinks import Sink, check_sink, open_sink
from logferry.sinks.base import Batching
from logferry.sinks.handler import HandlerSink, load_handler
from logferry.sources import (
    BucketSource,
    StreamSource,
    is_stream_url,
    open_source,
    open_stream_source,
)

log = logging.getLogger("logferry")


def open_configured_sink(
    name: str, cfg: SinkConfig, stop: threading.Event, base_dir: Path | None = None
) -> Sink:
    """Open one named sink of a pipeline file (handler modules import from ``base_dir`` too)."""
    if cfg.type == "python":
        assert cfg.handler is not None
        return HandlerSink(name, cfg.handler, cfg.args, base_dir=base_dir)
    assert cfg.url is not None
    return open_sink(cfg.url, cfg.options(), stop=stop)


def check_pipeline(config: PipelineConfig) -> None:
    """Deeper checks than the schema, with no side effects: sink URLs, keys, handlers.

    Raises :class:`ConfigErrors` naming every problem, each ``FILE:LINE: path: message``.
    """
    problems: list[str] = []
    for name, sink in config.sinks.items():
        try:
            if sink.type == "python":
                assert sink.handler is not None
                load_handler(sink.handler, config.base_dir)
            else:
                assert sink.url is not None
                check_sink(sink.url, sink.options())
        except ConfigError as exc:
            field = "handler" if sink.type == "python" else "url"
            problems.append(config.problem(("sinks", name, field), str(exc)))
    for name, source in config.sources.items():
        options = {
            "endpoint_url": source.endpoint_url,
            "verify": source.verify_tls,
            "start": source.start,
            "profile": source.profile,
            "region": source.region,
        }
        try:
            registry.check(source.url, "source", options)
        except ConfigError as exc:
            problems.append(config.problem(("sources", name, "url"), str(exc)))
    if problems:
        raise ConfigErrors(problems)


@dataclass
class SourcePlan:
    """One configured source, opened, with its router."""

    name: str
    source: BucketSource | StreamSource
    router: Router
    #: ``since`` / ``until`` of a bucket source, as epoch ms (read when the file was loaded).
    times: dict[str, int] = dataclasses.field(default_factory=dict)


def _format_options(route: RouteConfig, base: FormatOptions) -> FormatOptions | None:
    """A route's own decoding options over the pipeline's (None: the pipeline's)."""
    if route.expand is None and route.timestamp_fields is None and route.syslog_timezone is None:
        return None
    return dataclasses.replace(
        base,
        expand=route.expand,
        timestamp_fields=route.timestamp_fields or base.timestamp_fields,
        syslog_timezone=route.syslog_timezone or base.syslog_timezone,
    )


class Pipeline:
    """The opened form of a :class:`PipelineConfig`; close it when done."""

    def __init__(self, config: PipelineConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        #: Set to stop this pipeline's runs (shutdown or reload); also cuts sink retry waits.
        self.stop = stop or threading.Event()
        self.sinks: dict[str, Sink] = {}
        self.plans: list[SourcePlan] = []
        try:
            for name, sink_cfg in config.sinks.items():
                try:
                    sink = open_configured_sink(name, sink_cfg, self.stop, config.base_dir)
                    self.sinks[name] = sink
                    if any(
                        v is not None
                        for v in (sink_cfg.batch_lines, sink_cfg.batch_bytes, sink_cfg.batch_wait)
                    ):
                        sink.batching = Batching(
                            sink_cfg.batch_lines or config.batch_lines,
                            sink_cfg.batch_bytes or config.batch_bytes,
                            sink_cfg.batch_wait or config.batch_wait,
                        )
                except ConfigError as exc:
                    raise ConfigError(f"sink {name!r}: {exc}") from None
            # The pipeline's decoding options, which a route's own settings refine.
            base_format = format_options_of(self.options())
            for name, src_cfg in config.sources.items():
                source: BucketSource | StreamSource
                aws = {"profile": src_cfg.profile, "region": src_cfg.region}
                if is_stream_url(src_cfg.url):
                    source = open_stream_source(
                        src_cfg.url, endpoint_url=src_cfg.endpoint_url, start=src_cfg.start, **aws
                    )
                else:
                    source = open_source(
                        src_cfg.url,
                        endpoint_url=src_cfg.endpoint_url,
                        verify=src_cfg.verify_tls,
                        **aws,
                    )
                routes = [
                    Route(
                        r.prefix,
                        () if r.sinks == DROP else tuple(self.sinks[s] for s in r.sinks),
                        r.formats,
                        _format_options(r, base_format),
                    )
                    for r in src_cfg.all_routes()
                ]
                self.plans.append(SourcePlan(name, source, Router(routes), src_cfg.time_range()))
        except BaseException:
            self.close()
            raise

    def options(self, **overrides: object) -> ShipOptions:
        """Runner options from the file's settings."""
        opts = build(
            ShipOptions,
            workers=self.config.workers,
            max_attempts=self.config.max_attempts,
            batch_bytes=self.config.batch_bytes,
            batch_lines=self.config.batch_lines,
            batch_wait=self.config.batch_wait,
            max_record_bytes=self.config.max_record_bytes,
            max_decompressed_bytes=self.config.max_decompressed_bytes,
            max_decompression_ratio=self.config.max_decompression_ratio,
            max_zstd_window=self.config.max_zstd_window,
            **overrides,
        )
        assert isinstance(opts, ShipOptions)
        return opts

    def plan_for_bucket(self, bucket: str) -> SourcePlan | None:
        """The configured source reading ``bucket`` (for notifications)."""
        return next((p for p in self.plans if getattr(p.source, "bucket", None) == bucket), None)

    def notified_plan(self, bucket: str) -> SourcePlan:
        """The source that ships ``bucket``'s notifications; a bucket no source reads is
        refused (:class:`ConfigError`): whoever can send to a queue must not make us read
        other buckets."""
        plan = self.plan_for_bucket(bucket)
        if plan is None:
            read = sorted({b for p in self.plans if (b := getattr(p.source, "bucket", None))})
            raise ConfigError(
                f"no source reads bucket {bucket[:64]!r} (sources read: "
                f"{', '.join(read) or 'no bucket'}): the notification is refused"
            )
        return plan

    def run_once(
        self,
        ledger: Ledger,
        progress: Callable[[str], Progress] | None = None,
        **overrides: object,
    ) -> list[ShipResult]:
        """Catch up every source once (or ship ``keys=`` of each); one result per source."""
        results = []
        for plan in self.plans:
            if self.stop.is_set():
                break
            if isinstance(plan.source, StreamSource):
                if "keys" in overrides:
                    continue  # notifications name objects of buckets
                results.append(self.follow(plan, ledger, progress, follow=False))
                continue
            runner = ObjectRunner(
                plan.source,
                plan.router,
                ledger,
                self.options(**{**plan.times, **overrides}),
                progress=progress(plan.name) if progress else None,
                stop=self.stop,
            )
            results.append(runner.run())
        return results

    def stream_plans(self) -> list[SourcePlan]:
        """The sources that are followed (tail, CloudWatch) rather than listed."""
        return [p for p in self.plans if isinstance(p.source, StreamSource)]

    def follow(
        self,
        plan: SourcePlan,
        ledger: Ledger,
        progress: Callable[[str], Progress] | None = None,
        *,
        follow: bool = True,
    ) -> ShipResult:
        """Read a stream source: to its current end, or until the pipeline stops."""
        assert isinstance(plan.source, StreamSource)
        return StreamRunner(
            plan.source,
            plan.router,
            ledger,
            self.options(follow=follow),
            progress=progress(plan.name) if progress else None,
            stop=self.stop,
        ).run()

    def close(self) -> None:
        """Close sinks and sources."""
        for sink in self.sinks.values():
            sink.close()
        for plan in self.plans:
            plan.source.close()


class Daemon:
    """Runs a pipeline every ``interval`` seconds until stopped; reloads on request."""

    def __init__(
        self,
        load: Callable[[], PipelineConfig],
        ledger: Ledger,
        progress: Callable[[str], Progress] | None = None,
        on_cycle: Callable[[list[ShipResult]], None] | None = None,
    ) -> None:
        self._load = load
        self.ledger = ledger
        self.progress = progress
        self.on_cycle = on_cycle
        self.shutdown = threading.Event()
        self._wake = threading.Event()
        self._pending: PipelineConfig | None = None
        self._lock = threading.Lock()
        self.pipeline = Pipeline(load())
        self.cycles = 0
        self.failed_cycles = 0
        self._followers: list[threading.Thread] = []

    def request_reload(self) -> bool:
        """Validate the file again; if good, stop the current cycle and apply it next."""
        try:
            config = self._load()
            check_pipeline(config)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        with self._lock:
            self._pending = config
        log.warning("configuration reloaded: applying after the batches in flight")
        self.pipeline.stop.set()
        self._wake.set()
        return True

    def request_shutdown(self) -> None:
        """Stop after the batches in flight."""
        self.shutdown.set()
        self.pipeline.stop.set()
        self._wake.set()

    def _start_followers(self, once: bool) -> None:
        """Follow every stream source of the current pipeline, each in a supervised thread."""
        self._followers = []
        if once:
            return  # run_once reads stream sources to their current end itself
        pipeline = self.pipeline
        for plan in pipeline.stream_plans():

            def follow(plan: SourcePlan = plan) -> None:
                delay = 1.0
                while not pipeline.stop.is_set():
                    try:
                        result = pipeline.follow(plan, self.ledger, self.progress)
                    except Exception as exc:  # a follower must not die silently
                        log.error("following %s failed: %s; again in %.0f s", plan.name,
                                  one_line(exc), delay)  # fmt: skip
                        pipeline.stop.wait(delay)
                        delay = min(delay * 2, 60.0)
                        continue
                    if self.on_cycle:
                        self.on_cycle([result])
                    return

            thread = threading.Thread(target=follow, name=f"logferry-follow-{plan.name}")
            thread.start()
            self._followers.append(thread)

    def _stop_followers(self) -> None:
        self.pipeline.stop.set()
        for thread in self._followers:
            thread.join()
        self._followers = []

    def run(self, once: bool = False) -> None:
        """Cycle until shut down (or once; a reload during that cycle runs it again).

        Bucket sources are listed every ``interval``; stream sources are followed all along
        (with ``once``, read to their current end instead).
        """
        self._start_followers(once)
        try:
            while True:
                results = self.pipeline.run_once(self.ledger, self.progress)
                self.cycles += 1
                if any(not r.ok and not r.interrupted for r in results):
                    self.failed_cycles += 1
                if self.on_cycle:
                    self.on_cycle(results)
                if self.shutdown.is_set():
                    return
                if self._apply_pending(once):
                    continue  # the reload cut the cycle short: resume at once
                if once:
                    return
                self._wake.wait(self.pipeline.config.interval)
                self._wake.clear()
                if self.shutdown.is_set():
                    return
                self._apply_pending(once)
        finally:
            self._stop_followers()
            self.pipeline.close()

    def _apply_pending(self, once: bool) -> bool:
        """Swap in a reloaded configuration: stop and join everything of the old one first."""
        with self._lock:
            config, self._pending = self._pending, None
        if config is None:
            return False
        self._stop_followers()
        try:
            new = Pipeline(config)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.pipeline.stop.clear()
            self._start_followers(once)
            return False
        self.pipeline.close()
        self.pipeline = new
        if self.shutdown.is_set():
            new.stop.set()
        self._start_followers(once)
        return True


def plans_summary(config: PipelineConfig) -> Iterable[str]:
    """Human lines describing sources, routes and sinks (``logferry validate``)."""
    for name, sink in config.sinks.items():
        target = sink.handler if sink.type == "python" else sink.url
        yield f"sink {name}: {sink.type} {target}"
    for name, source in config.sources.items():
        yield f"source {name}: {source.url}"
        for route in sorted(source.all_routes(), key=lambda r: -len(r.prefix)):
            dest = "drop" if route.sinks == DROP else ", ".join(route.sinks)
            yield f"  {route.prefix or '(everything else)'} → {'|'.join(route.formats)} → {dest}"
    worker = config.worker
    if worker.queue or worker.lanes:
        yield f"worker: {redact_url(worker.queue or '(--queue)')}, {plural(worker.concurrency, 'threads')}"
        for name, lane in sorted(worker.lanes.items(), key=lambda kv: kv[1].min_size):
            yield (
                f"  lane {name}: objects of {lane.min_size:,} bytes or more → "
                f"{redact_url(lane.queue)}, {plural(lane.concurrency, 'threads')}"
            )
