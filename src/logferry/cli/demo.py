"""``logferry demo``: the main job on embedded defaults, on generated sample objects."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from logferry import api
from logferry.cli.common import err, handle_errors, make_progress, print_summary
from logferry.generate.flowlogs import aws_objects, ibm_objects, write_to_dir


@click.command()
@click.option(
    "--dir",
    "directory",
    default="logferry-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the sample bucket, the output and the ledger go.",
)
@click.option(
    "--objects",
    type=click.IntRange(1, 100_000),
    default=24,
    show_default=True,
    help="Sample objects of each kind (IBM and AWS flow logs) to generate.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def demo(directory: str, objects: int, quiet: bool) -> None:
    """Generate sample IBM and AWS flow-log objects and ship them to local JSONL files.

    The first run generates DIR/bucket and ships it; a second run finds nothing
    new to ship, because the ledger (DIR/ledger.db) remembers what was done.
    """
    root = Path(directory).resolve()
    bucket, out, ledger_path = root / "bucket", root / "out", root / "ledger.db"
    if not bucket.exists() or not any(bucket.iterdir()):
        bucket.mkdir(parents=True, exist_ok=True)
        n = write_to_dir(bucket, ibm_objects(objects)) + write_to_dir(bucket, aws_objects(objects))
        err.print(f"generated {n} sample flow-log objects in {bucket}")
    result = api.ship(str(bucket), str(out), ledger=str(ledger_path), progress=make_progress(quiet))
    code = print_summary(result, as_json=False, quiet=False)
    if result.objects == 0 and not result.failed:
        err.print("nothing new to ship: the ledger already has every object done")
    err.print(
        f"\nbucket (stand-in for s3://…): {bucket}\n"
        f"output, one JSONL file per object: {out}\n"
        f"ledger: {ledger_path}\n\n"
        f"next: logferry status --ledger sqlite:///{ledger_path}\n"
        f"      find {out} -name '*.jsonl' | head -3 | xargs head -n 2",
        soft_wrap=True,
    )
    sys.exit(code)
