"""``logferry ship``: ship a bucket's objects to one or more sinks."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from logferry import api
from logferry.cli.common import (
    FailureLog,
    fail_usage,
    handle_errors,
    install_signal_handlers,
    make_progress,
    print_summary,
)
from logferry.cli.metrics import metrics_options, serving_metrics
from logferry.cli.processes import fan_out, processes_option
from logferry.codecs.formats import FORMATS
from logferry.config import ShipOptions, SinkOptions, build
from logferry.engine import ShipResult
from logferry.ledger import open_ledger
from logferry.registry import Role
from logferry.sinks import check_sink
from logferry.sources import is_stream_url
from logferry.timeparse import parse_time

FORMAT_CHOICES = sorted({"auto", *FORMATS})


def source_options(func):  # type: ignore[no-untyped-def]
    """Options every command that reads a source accepts."""
    func = click.option(
        "--endpoint-url",
        envvar=None,
        help="S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, COS_ENDPOINT for cos://).",
    )(func)
    func = click.option(
        "--no-verify-tls",
        is_flag=True,
        help="Do not verify TLS certificates (self-signed test endpoints only).",
    )(func)
    func = click.option(
        "--profile",
        envvar="AWS_PROFILE",
        help="AWS profile for s3:// and cloudwatch:// (default: AWS_PROFILE, else the default chain).",
    )(func)
    func = click.option(
        "--region", envvar="AWS_REGION", help="AWS region (default: AWS_REGION or the profile's)."
    )(func)
    return func


def time_options(func):  # type: ignore[no-untyped-def]
    """``--since`` / ``--until``: which objects of a bucket, by time."""
    for flag, text in (
        ("--since", "Only objects with events at or after TIME"),
        ("--until", "Only objects with events before TIME"),
    ):
        func = click.option(
            flag,
            metavar="TIME",
            help=f"{text} (2h ago, 30m, 1d, ISO 8601, epoch): by the time in the key where it "
            "has one (IBM/AWS flow logs, CloudTrail), else LastModified.",
        )(func)
    return func


def time_range(since: str | None, until: str | None) -> dict[str, int]:
    """``--since`` / ``--until`` as the ShipOptions fields (epoch ms), relative to one now."""
    now = int(time.time() * 1000)
    return {
        name: parse_time(text, now_ms=now)
        for name, text in (("since", since), ("until", until))
        if text
    }


def decode_options(func):  # type: ignore[no-untyped-def]
    """Options that choose how objects are decoded."""
    func = click.option(
        "--format",
        "fmt",
        default="auto",
        show_default=True,
        type=click.Choice(FORMAT_CHOICES),
        help="How to turn objects into records; auto picks from the key and content.",
    )(func)
    func = click.option(
        "--expand", metavar="FIELD", help="json format: one record per element of FIELD."
    )(func)
    func = click.option(
        "--syslog-timezone",
        default="UTC",
        show_default=True,
        metavar="ZONE",
        help="syslog: the IANA zone RFC 3164 timestamps were written in.",
    )(func)
    func = click.option(
        "--timestamp-field",
        "timestamp_fields",
        multiple=True,
        metavar="FIELD",
        help="ndjson/json/csv: field holding the event time (repeatable; default timestamp, @timestamp, time, ts).",
    )(func)
    limits = (
        (
            "--max-record-bytes",
            1 << 20,
            1024,
            "Longest line kept when decoding (longer ones are cut and counted); the largest record of a JSON document (larger fails the object).",
        ),
        (
            "--max-decompressed-bytes",
            0,
            0,
            "An object that decompresses to more fails (0: no limit).",
        ),
        (
            "--max-decompression-ratio",
            1000,
            0,
            "An object expanding more than this many times, past 64 MiB, fails as a decompression bomb (0: no limit).",
        ),
        (
            "--max-zstd-window",
            1 << 31,
            1 << 20,
            "Largest zstd window accepted, in bytes (2 GiB covers zstd --long=31).",
        ),
    )
    for flag, default, low, text in limits:
        func = click.option(
            flag, type=click.IntRange(min=low), default=default, show_default=True, help=text
        )(func)
    return func


@click.command()
@click.argument("source", required=False)
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="FILE",
    help="Ship every source of a pipeline file once (its routes pick formats and sinks).",
)
@click.option(
    "--to",
    "sinks",
    multiple=True,
    metavar="SINK",
    help="Sink URL (repeatable): mezmo+https://HOST/logs/ingest, logdna:REGION, file:///DIR, -.",
)
@decode_options
@click.option("--key", help="Ship exactly this object (what a bucket notification names).")
@click.option(
    "--latest",
    type=click.IntRange(min=1),
    metavar="N",
    help="Ship the N newest objects not yet done.",
)
@click.option(
    "--all", "resend_all", is_flag=True, help="Re-send every object, whatever the ledger says."
)
@click.option(
    "--ledger", metavar="URL", help="Ledger URL (default: LOGFERRY_LEDGER or the user state dir)."
)
@source_options
@click.option("--app", default="logferry", show_default=True, help="Mezmo app name.")
@click.option("--hostname", help="Mezmo hostname (default: this machine's).")
@click.option("--tags", help="Mezmo tags, comma-separated.")
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    help="Let sinks send credentials over plain http:// to hosts other than loopback.",
)
@click.option(
    "--max-line-bytes",
    type=click.IntRange(min=256),
    default=32 * 1024,
    show_default=True,
    help="Longer lines are truncated with a marker (and counted).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Objects shipped at the same time.",
)
@click.option(
    "--batch-bytes",
    type=click.IntRange(min=1024),
    default=2 * 1024 * 1024,
    show_default=True,
    help="Bytes of log lines per batch (the unit of checkpointing).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Runs that try an object before it waits in the error queue for `logferry drain`.",
)
@click.option(
    "--retry-timeout",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Seconds a one-off run retries a sink that keeps failing before the object waits for "
    "the next run (followed runs retry without end, at most a minute apart).",
)
@time_options
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep going until SIGINT/SIGTERM: streams are followed, buckets listed every --interval.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=60.0,
    show_default=True,
    help="Buckets with --follow: seconds between listings.",
)
@click.option(
    "--from",
    "start",
    type=click.Choice(["beginning", "end"]),
    default="beginning",
    show_default=True,
    help="tail: where files seen for the first time start.",
)
@click.option(
    "--batch-lines",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Records per batch at most.",
)
@click.option(
    "--batch-wait",
    type=click.FloatRange(min=0.001),
    default=1.0,
    show_default=True,
    help="Streams: seconds a record may wait for its batch to fill.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGINT/SIGTERM, seconds to finish and checkpoint the batches in flight.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@metrics_options
@processes_option
@handle_errors
def ship(
    source: str | None,
    config_path: str | None,
    sinks: tuple[str, ...],
    ledger: str | None,
    metrics_port: int | None,
    metrics_host: str,
    endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    shutdown_timeout: float,
    as_json: bool,
    quiet: bool,
    processes: int,
    **flags: Any,
) -> None:
    """Ship the objects of SOURCE (s3://, cos://, file:///DIR or a path) to every --to sink.

    With -c FILE, ship every source of a pipeline file once instead.

    By default it catches up: every object the ledger has not seen done, oldest
    first, listing again until nothing new arrives. Exit 0 when everything
    shipped, 1 when any object failed, 2 for usage errors.
    """
    if config_path:
        if source or sinks:
            fail_usage("-c FILE takes its sources and sinks from the file: drop SOURCE and --to")
        from logferry.cli.run import run_pipeline

        sys.exit(
            run_pipeline(
                config_path,
                ledger=ledger,
                once=True,
                as_json=as_json,
                quiet=quiet,
                shutdown_timeout=shutdown_timeout,
                processes=processes,
            )
        )
    if not source or not sinks:
        fail_usage("give SOURCE and at least one --to SINK (or -c pipeline.yaml)")
    assert source is not None
    if "-" in sinks and as_json:
        fail_usage("--json and the stdout sink (-) would share stdout: pick one")
    options, sink_options = options_from_flags(flags)
    if processes > 1:
        if options.mode == "key":
            fail_usage("--key names one object: drop --processes")
        check_shared(source, sinks, sink_options, ledger)
        targets: list[tuple[str, Role]] = [(source, "source"), *((s, "sink") for s in sinks)]
        code = fan_out(
            processes, follow=options.follow, as_json=as_json, quiet=quiet, targets=targets
        )
        if code is not None:
            sys.exit(code)
    stop = threading.Event()
    install_signal_handlers(stop, shutdown_timeout)
    following_bucket = options.follow and not is_stream_url(source)

    def on_cycle(cycle: ShipResult) -> None:
        # A bucket followed for days: a summary line per cycle that shipped or failed.
        if cycle.objects or cycle.failed:
            print_summary(cycle, as_json=False, quiet=quiet, final=False)

    led = open_ledger(ledger)
    try:
        with serving_metrics(metrics_port, metrics_host, led):
            result = api.ship(
                source,
                list(sinks),
                options,
                sink_options=sink_options,
                ledger=led,
                endpoint_url=endpoint_url,
                profile=profile,
                region=region,
                progress=FailureLog() if following_bucket and not quiet else make_progress(quiet),
                stop=stop,
                on_cycle=on_cycle,
            )
    finally:
        led.close()
    sys.exit(print_summary(result, as_json=as_json, quiet=quiet))


def check_shared(
    source: str, sinks: tuple[str, ...], sink_options: SinkOptions, ledger: str | None
) -> None:
    """What the copies of ``ship --processes`` would each find wrong, found once, here."""
    if is_stream_url(source):
        fail_usage("--processes divides a bucket's objects: a stream source takes one process")
    for sink in sinks:
        check_sink(sink, sink_options)
    open_ledger(ledger).close()  # its URL is sound, and its schema made once


#: Flags of ``ship`` that are sink options (the rest are ShipOptions, under their names).
_SINK_FLAGS = ("app", "hostname", "tags", "max_line_bytes", "allow_insecure_http")


def options_from_flags(flags: dict[str, Any]) -> tuple[ShipOptions, SinkOptions]:
    """The typed options of ``ship``'s flags; a usage error for flags that do not go together."""
    flags = dict(flags)
    key, latest, resend_all = flags.pop("key"), flags.pop("latest"), flags.pop("resend_all")
    if sum(map(bool, (key, latest, resend_all))) > 1:
        fail_usage("--key, --latest and --all are exclusive: pick one")
    sink = {name: flags.pop(name) for name in _SINK_FLAGS}
    sink["verify_tls"] = not flags.pop("no_verify_tls")
    fields = flags.pop("timestamp_fields")
    times = time_range(flags.pop("since"), flags.pop("until"))
    options = build(
        ShipOptions,
        **times,
        mode="key" if key else "latest" if latest else "all" if resend_all else "catchup",
        keys=(key,) if key else (),
        latest=latest,
        force=resend_all,
        format=flags.pop("fmt"),
        **({"timestamp_fields": fields} if fields else {}),
        **flags,
    )
    sink_options = build(SinkOptions, **sink)
    assert isinstance(options, ShipOptions) and isinstance(sink_options, SinkOptions)
    return options, sink_options
