"""``logferry package``: build deployable artifacts (an AWS Lambda zip)."""

from __future__ import annotations

from pathlib import Path

import click

from logferry import packaging
from logferry.cli.common import emit_json, err, handle_errors, human_bytes


@click.group()
def package() -> None:
    """Build deployable artifacts: a zip for AWS Lambda."""


@package.command("lambda")
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option(
    "--arch",
    type=click.Choice(sorted(packaging.ARCH_PLATFORM)),
    default="x86_64",
    show_default=True,
    help="The function's architecture (selects manylinux x86_64 or aarch64 wheels).",
)
@click.option(
    "--python-version",
    default=packaging.DEFAULT_PYTHON,
    show_default=True,
    metavar="X.Y",
    help="The Lambda runtime's Python version (pythonX.Y); native wheels are built for it.",
)
@click.option(
    "--no-postgres",
    is_flag=True,
    help="Leave out psycopg and psycopg-pool (only a PostgreSQL ledger needs them).",
)
@click.option(
    "--with",
    "extra",
    multiple=True,
    metavar="REQ",
    help="Another requirement to bundle, e.g. a handler sink's dependency (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON on stdout.")
@handle_errors
def lambda_(
    out: Path,
    arch: str,
    python_version: str,
    no_postgres: bool,
    extra: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write OUT (a .zip) for the handler logferry.serverless.aws_lambda.handler.

    Bundles logferry and its dependencies as wheels for Lambda's platform, leaving out boto3
    and what else the Python runtime provides. Refuses a package over 250 MB unzipped.
    """
    built = packaging.build_lambda_zip(
        out, arch=arch, python_version=python_version, postgres=not no_postgres, extra=extra
    )
    if as_json:
        emit_json(
            {
                "path": str(built.path),
                "zipped_bytes": built.zipped_bytes,
                "unzipped_bytes": built.unzipped_bytes,
                "files": built.files,
                "arch": arch,
                "python_version": python_version,
                "packages": built.packages,
            }
        )
    err.print(
        f"wrote {built.path}: {human_bytes(built.zipped_bytes)} zipped, "
        f"{human_bytes(built.unzipped_bytes)} unzipped (limit {human_bytes(packaging.UNZIPPED_LIMIT)}), "
        f"{built.files} files, {len(built.packages)} distributions for {arch}/python{python_version}",
        soft_wrap=True,
    )
    if built.left_out:
        err.print(f"left out (the runtime provides them): {', '.join(built.left_out)}")
    if built.zipped_bytes > packaging.DIRECT_UPLOAD_LIMIT:
        err.print(
            f"[yellow]warning:[/] over {human_bytes(packaging.DIRECT_UPLOAD_LIMIT)} zipped: upload it "
            "through S3 (sam deploy and aws lambda update-function-code --s3-bucket do), "
            "not directly",
            soft_wrap=True,
        )


__all__ = ["package"]
