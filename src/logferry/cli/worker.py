"""``logferry worker``: competing consumers of object notifications from a work queue."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FailureLog,
    err,
    fail_usage,
    handle_errors,
    install_signal_handlers,
    print_worker_summary,
    safe_text,
)
from logferry.cli.metrics import metrics_options, serving_metrics
from logferry.cli.processes import (
    fan_out,
    forkable,
    pipeline_targets,
    processes_option,
)
from logferry.config import (
    PipelineConfig,
    SinkConfig,
    SourceConfig,
    WorkerConfig,
    load_pipeline,
)
from logferry.engine.messages import Settings
from logferry.engine.processes import Share
from logferry.engine.results import Progress
from logferry.engine.worker import Worker, close_lanes, open_lanes
from logferry.errors import ConfigError
from logferry.ledger import open_ledger
from logferry.pipeline import Pipeline, check_pipeline
from logferry.redact import redact_url

#: Seconds past --shutdown-timeout before a worker that still has not stopped exits anyway.
FORCE_EXIT_GRACE = 30.0


def _config(config_path: str | None, sources: tuple[str, ...], sinks: tuple[str, ...],
            fmt: str, endpoint_url: str | None) -> PipelineConfig:  # fmt: skip
    """The pipeline file, or one made of --source, --to and --format."""
    if config_path:
        if sources or sinks:
            fail_usage("-c FILE takes its sources and sinks from the file: drop --source and --to")
        return load_pipeline(config_path)
    if not sources or not sinks:
        fail_usage("give -c pipeline.yaml, or --source BUCKET_URL and --to SINK")
    names = [f"sink{i}" for i in range(len(sinks))]
    try:
        return PipelineConfig(
            sinks={n: SinkConfig(url=url) for n, url in zip(names, sinks, strict=True)},
            sources={
                f"source{i}": SourceConfig(
                    url=url, format=fmt, sinks=names, endpoint_url=endpoint_url
                )
                for i, url in enumerate(sources)
            },
        )
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


@click.command()
@click.option("--queue", "queue_url", metavar="URL",
              help="Queue of object notifications: sqs://NAME, an SQS queue URL, nats://HOST/STREAM "
                   "(default: the file's worker.queue).")  # fmt: skip
@click.option("-c", "--config", "config_path", metavar="FILE",
              help="Pipeline YAML: its sources say which buckets are shipped, and where to.")  # fmt: skip
@click.option("--source", "sources", multiple=True, metavar="URL",
              help="Without -c: a bucket whose notifications are shipped (repeatable).")  # fmt: skip
@click.option(
    "--to", "sinks", multiple=True, metavar="SINK", help="Without -c: a sink URL (repeatable)."
)
@click.option(
    "--format", "fmt", default="auto", show_default=True, help="Without -c: the log format."
)
@click.option("--endpoint-url", metavar="URL", help="Without -c: the sources' S3 endpoint.")
@click.option("--ledger", metavar="URL", help="Ledger URL (overrides the file's `ledger:`).")
@click.option("--concurrency", type=click.IntRange(1, 64), metavar="N",
              help="Messages handled at the same time (default 4).")  # fmt: skip
@click.option("--visibility-timeout", type=click.FloatRange(min=1), metavar="S",
              help="Seconds a received message stays hidden; extended while shipping.")  # fmt: skip
@click.option("--max-deliveries", type=click.IntRange(min=1), metavar="N",
              help="Deliveries after which a failing message is dead-lettered (default 5).")  # fmt: skip
@click.option("--dead-letter", metavar="URL", help="Where dead-lettered messages go (a queue).")
@click.option("--retry-timeout", type=click.FloatRange(min=0.1), metavar="S",
              help="Seconds a sink may ask to retry before the message is given back (default 30).")  # fmt: skip
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="On SIGINT/SIGTERM, seconds to finish the messages in hand; then they are given back.")  # fmt: skip
@click.option("--stop-when-idle", type=click.FloatRange(min=0), metavar="S",
              help="Exit after S seconds without a message (batch jobs, tests).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout at exit.")
@click.option("--quiet", "-q", is_flag=True, help="No failure lines or summary on stderr.")
@metrics_options
@processes_option
@handle_errors
def worker(queue_url: str | None, config_path: str | None, sources: tuple[str, ...],
           sinks: tuple[str, ...], fmt: str, endpoint_url: str | None, ledger: str | None,
           shutdown_timeout: float, stop_when_idle: float | None, as_json: bool, quiet: bool,
           metrics_port: int | None, metrics_host: str, processes: int, **flags: Any,
           ) -> None:  # fmt: skip
    """Ship the objects named by notifications from a queue, as one of many competing workers.

    Each message is acked once the ledger has every object it names done (a duplicate
    delivery is acked without shipping again), given back with a growing delay on a
    transient failure, and dead-lettered after --max-deliveries or when it cannot be used.
    SIGINT/SIGTERM stop receiving and finish the messages in hand; exit 0.
    """
    logging.getLogger("logferry").setLevel(min(logging.getLogger().level, logging.WARNING))
    config = _config(config_path, sources, sinks, fmt, endpoint_url)
    check_pipeline(config)
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        wcfg = WorkerConfig.model_validate({**config.worker.model_dump(), **given})
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    queue_url = queue_url or wcfg.queue
    if not queue_url:
        fail_usage("give --queue URL (or worker.queue in the pipeline file)")
    assert queue_url is not None
    if processes > 1:
        # Each copy is a worker of its own (its threads, its owner id); the queue shares out
        # the messages, so nothing is divided here. With --stop-when-idle a copy that ends
        # by itself (exit 1: it dead-lettered) is done, not crashed: it is not restarted.
        code = fan_out(
            processes, follow=True, as_json=as_json, quiet=quiet,
            restart_failed=stop_when_idle is None,
            targets=[(queue_url, "queue"), *pipeline_targets(config)], fork=forkable(config),
        )  # fmt: skip
        if code is not None:
            sys.exit(code)
    led = open_ledger(ledger or config.ledger)
    pipeline: Pipeline | None = None
    lanes = []
    try:
        pipeline = Pipeline(config)
        lanes = open_lanes(wcfg, queue_url)
        settings = Settings(
            pipeline.options(retry_timeout=wcfg.retry_timeout),
            wcfg.retry_delay,
            wcfg.retry_delay_cap,
        )
        log = FailureLog()
        work = Worker(
            led, lanes, pipeline.notified_plan, settings, stop=pipeline.stop,
            progress=(lambda: Progress()) if quiet else (lambda: log),
        )  # fmt: skip
        install_signal_handlers(
            work.request_stop, shutdown_timeout, shutdown_timeout + FORCE_EXIT_GRACE
        )
        share = Share.from_env()
        if not quiet and share.index == 0:  # said once, not by every copy
            extra = "".join(f", lane {ln.name} ({ln.concurrency})" for ln in lanes[1:])
            each = f"{share.count} processes of " if share.shared else ""
            err.print(
                f"worker: consuming {safe_text(redact_url(queue_url))} with "
                f"{each}{lanes[0].concurrency} threads{extra} (SIGINT/SIGTERM stop)",
                soft_wrap=True,
            )
        with serving_metrics(metrics_port, metrics_host, led):
            stats = work.run(shutdown_timeout, stop_when_idle)
    finally:
        close_lanes(lanes)
        if pipeline is not None:
            pipeline.close()
        led.close()
    data = stats.to_dict()
    print_worker_summary(data, as_json=as_json, quiet=quiet)
    dead = data["messages"]["dead_lettered"]
    sys.exit(EXIT_FAILED if stop_when_idle is not None and dead else EXIT_OK)
