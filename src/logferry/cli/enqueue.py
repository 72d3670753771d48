"""``logferry enqueue``: list a bucket into a work queue for ``logferry worker`` (backfills)."""

from __future__ import annotations

import sys
import threading
import time

import click

from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    err,
    fail_usage,
    handle_errors,
    install_signal_handlers,
    json_text,
    safe_text,
)
from logferry.cli.ship import source_options, time_options, time_range
from logferry.engine.enqueue import EnqueueResult
from logferry.engine.enqueue import enqueue as run_enqueue
from logferry.ledger import open_ledger

#: Seconds between progress lines on stderr.
PROGRESS_EVERY = 2.0


class _Progress:
    """A progress line on stderr every few seconds (listed / skipped / published)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = time.monotonic()

    def __call__(self, result: EnqueueResult) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        err.print(
            f"listed {result.listed:,}, skipped {result.skipped:,}, published {result.published:,}",
            highlight=False,
        )


def _source_settings(
    source: str | None, config_path: str | None, flags: dict[str, object]
) -> tuple[str, dict[str, object], dict[str, str | None], str | None]:
    """(source URL, its open options, its since/until texts, the file's ledger) from the
    command line or the pipeline file's source named ``source``."""
    options = {
        "endpoint_url": flags["endpoint_url"],
        "verify": not flags["no_verify_tls"],
        "profile": flags["profile"],
        "region": flags["region"],
    }
    times: dict[str, str | None] = {"since": None, "until": None}
    if not config_path:
        if not source:
            fail_usage("give SOURCE (s3://BUCKET/PREFIX) or -c pipeline.yaml")
        assert source is not None
        return source, options, times, None
    from logferry.config import load_pipeline
    from logferry.sources import is_stream_url

    config = load_pipeline(config_path)
    buckets = {n: s for n, s in config.sources.items() if not is_stream_url(s.url)}
    if source is None and len(buckets) != 1:
        fail_usage(f"name the source of {config_path} to enqueue: {', '.join(buckets) or 'none'}")
    name = source or next(iter(buckets))
    if name not in buckets:
        fail_usage(f"{config_path} has no bucket source {name!r}: {', '.join(buckets) or 'none'}")
    chosen = buckets[name]
    options = {
        "endpoint_url": flags["endpoint_url"] or chosen.endpoint_url,
        "verify": chosen.verify_tls and not flags["no_verify_tls"],
        "profile": flags["profile"] or chosen.profile,
        "region": flags["region"] or chosen.region,
    }
    return chosen.url, options, {"since": chosen.since, "until": chosen.until}, config.ledger


@click.command()
@click.argument("source", required=False)
@click.option(
    "--queue",
    "queue_url",
    required=True,
    metavar="URL",
    help="Work queue: sqs://NAME, https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, "
    "nats://HOST:4222/STREAM?subject=SUBJECT (options may follow in the query).",
)
@time_options
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="P",
    help="List only keys under P (after the source's prefix; repeatable: listed in parallel). "
    "Default: the bucket split at '/' into up to 64 prefixes.",
)
@click.option(
    "--ledger", metavar="URL", help="Ledger URL (default: LOGFERRY_LEDGER or the user state dir)."
)
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="FILE",
    help="Take the source (SOURCE is then its name), its settings and the ledger from a pipeline file.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Prefixes listed at once.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Messages per publish; the cursor moves after each, so a crash repeats at most one.",
)
@click.option("--restart", is_flag=True, help="Forget this backfill's cursors and list again.")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only errors.")
@handle_errors
def enqueue(
    source: str | None,
    queue_url: str,
    prefixes: tuple[str, ...],
    ledger: str | None,
    config_path: str | None,
    parallel: int,
    batch: int,
    restart: bool,
    as_json: bool,
    quiet: bool,
    **flags: object,
) -> None:
    """Publish a message for every object of SOURCE to a work queue, for `logferry worker`.

    Objects out of --since/--until or done in the ledger are skipped. Interrupted, the same
    command resumes where it stopped: each prefix's cursor is kept in the ledger. Exit 0
    when everything was published, 1 if publishing failed or was interrupted, 2 for usage
    or configuration errors.
    """
    from logferry.queues import open_queue
    from logferry.sources import open_source
    from logferry.sources.s3 import S3Source

    url, options, file_times, file_ledger = _source_settings(source, config_path, flags)
    texts = {k: flags[k] or file_times[k] for k in ("since", "until")}
    times = time_range(texts["since"], texts["until"])  # type: ignore[arg-type]
    bucket = open_source(url, **options)  # type: ignore[arg-type]
    if not isinstance(bucket, S3Source):
        fail_usage(f"enqueue lists s3:// or cos:// buckets, not {safe_text(bucket.display)}")
    assert isinstance(bucket, S3Source)
    work_queue = open_queue(queue_url, publish_only=True)
    led = open_ledger(ledger or file_ledger)
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        result = run_enqueue(
            bucket,
            work_queue,
            led,
            prefixes=prefixes,
            since=times.get("since"),
            until=times.get("until"),
            parallel=parallel,
            batch=batch,
            restart=restart,
            stop=stop,
            progress=_Progress(quiet),
        )
    finally:
        work_queue.close()
        led.close()
        bucket.close()
    sys.exit(_summary(result, work_queue.name, as_json=as_json, quiet=quiet))


def _summary(result: EnqueueResult, queue_name: str, *, as_json: bool, quiet: bool) -> int:
    if as_json:
        sys.stdout.write(json_text({**result.as_dict(), "queue": queue_name}) + "\n")
    if result.error:
        err.print(f"[bold red]error:[/] {safe_text(result.error)}", soft_wrap=True)
    if not quiet:
        note = ""
        if result.resumed and not result.listed and not result.error:
            note = " (already enqueued: --restart lists again)"
        err.print(
            f"published {result.published:,} to {safe_text(queue_name)}; listed "
            f"{result.listed:,} in {result.prefixes} prefixes, skipped {result.skipped:,} "
            f"({result.out_of_range:,} out of range, {result.done:,} done){note}",
            soft_wrap=True,
            highlight=False,
        )
        if result.interrupted:
            err.print("interrupted: the same command resumes where this one stopped")
    return EXIT_FAILED if result.error or result.interrupted else EXIT_OK
