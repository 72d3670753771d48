"""``logferry generate``: synthetic logs for demos, tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from logferry.cli.common import err, handle_errors
from logferry.errors import ConfigError, LogferryError
from logferry.generate.api_requests import ApiRequestGenerator, generate
from logferry.generate.flowlogs import aws_objects, ibm_objects, write_to_dir


@click.group("generate")
def generate_group() -> None:
    """Write synthetic logs: API request lines to a growing file, flow-log objects to a bucket."""


@generate_group.command("api-requests")
@click.option(
    "--out",
    envvar="LOG_FILE_PATH",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to append to (env LOG_FILE_PATH).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Lines per second; sets the interval to batch/rate.",
)
@click.option(
    "--batch",
    envvar="LOG_BATCH_SIZE",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Lines per write (env LOG_BATCH_SIZE).",
)
@click.option(
    "--interval",
    envvar="LOG_INTERVAL_SECONDS",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between batches (env LOG_INTERVAL_SECONDS).",
)
@click.option(
    "--max",
    "max_lines",
    envvar="MAX_LOGS_TO_GENERATE",
    type=click.IntRange(min=0),
    help="Stop after this many lines; 0 or unset: run until interrupted (env MAX_LOGS_TO_GENERATE).",
)
@click.option("--customers", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed", type=int, help="Seed for a reproducible sequence.")
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Backfill: time lines from this UTC time on (interval apart per batch), no sleeping.",
)
@handle_errors
def api_requests(
    out: Path,
    rate: float | None,
    batch: int,
    interval: float,
    max_lines: int | None,
    customers: int,
    seed: int | None,
    start: datetime | None,
) -> None:
    """Append `TIME CUSTOMER PATH STATUS DURATION` lines to FILE, a whole batch per write."""
    if rate is not None:
        interval = batch / rate
    gen = ApiRequestGenerator(customers=customers, seed=seed)
    begin = None if start is None else start.replace(tzinfo=UTC).timestamp()
    try:
        written = generate(
            out,
            batch=batch,
            interval=interval,
            max_lines=max_lines or None,
            start=begin,
            generator=gen,
        )
    except KeyboardInterrupt:
        err.print(f"interrupted; lines so far are in {out}")
        return
    err.print(f"wrote {written:,} lines to {out}")


@generate_group.command("flowlogs")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="s3://BUCKET/PREFIX|DIR",
    help="Bucket (and key prefix) to upload to, or a local directory.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ibm", "aws"]),
    default="ibm",
    show_default=True,
)
@click.option("--objects", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, help="Seed (default: the format's fixed seed).")
@click.option("--endpoint-url", metavar="URL", help="S3-compatible endpoint (MinIO, IBM COS).")
@handle_errors
def flowlogs(
    target: str, fmt: str, objects: int, seed: int | None, endpoint_url: str | None
) -> None:
    """Write gzip IBM or AWS VPC flow-log objects, keyed as the services key them."""
    make = ibm_objects if fmt == "ibm" else aws_objects
    items = make(objects) if seed is None else make(objects, seed=seed)
    if target.startswith("s3://"):
        bucket, _, prefix = target[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"no bucket in {target!r}: use s3://BUCKET/PREFIX")
        import boto3
        import botocore.exceptions

        client = boto3.client("s3", endpoint_url=endpoint_url)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        n = 0
        try:
            for key, data in items:
                client.put_object(Bucket=bucket, Key=prefix + key, Body=data)
                n += 1
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise LogferryError(
                f"upload to s3://{bucket} failed after {n} objects: {exc}"
            ) from None
    elif "://" in target:
        raise ConfigError(f"unsupported target {target!r}: use s3://BUCKET/PREFIX or a directory")
    else:
        n = write_to_dir(Path(target), items)
    err.print(f"wrote {n} {fmt} flow-log objects to {target}")
