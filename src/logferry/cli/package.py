"""``logferry package``: build deployable artifacts (an AWS Lambda zip, a single-file zipapp)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from logferry import packaging
from logferry.cli.common import emit_json, err, handle_errors, human_bytes
from logferry.config import PipelineConfig
from logferry.extras import EXTRAS

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def package() -> None:
    """Build deployable artifacts: a zip for AWS Lambda, a single-file executable."""


def pipeline_for(config: Path | None) -> PipelineConfig | None:
    """The pipeline a package is built for: ``--config``, else the serverless environment
    (``LOGFERRY_CONFIG``, ``LOGFERRY_SINKS``, ``LOGDNA_*``), else None (the core only)."""
    from logferry.config import load_pipeline
    from logferry.serverless.common import config_from_env

    if config is not None:
        return load_pipeline(str(config))
    contract = ("LOGFERRY_CONFIG", "LOGFERRY_SINKS", "LOGDNA_ENDPOINT", "LOGDNA_REGION")
    if any(os.environ.get(name) for name in contract):
        return config_from_env(need_source=False)
    return None


def content_options(func: F) -> F:
    """What goes in: the pipeline, extras, the ledger, more requirements, the pins."""
    options = [
        click.option(
            "-c",
            "--config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="The pipeline file it runs: its sinks and sources decide the extras "
            "(default: the LOGFERRY_* environment, else the core only).",
        ),
        click.option(
            "--extra",
            "extras",
            multiple=True,
            type=click.Choice(sorted(EXTRAS)),
            help="Bundle this extra too (repeatable).",
        ),
        click.option(
            "--ledger",
            envvar="LOGFERRY_LEDGER",
            metavar="URL",
            help="The ledger it will use when the pipeline names none (env LOGFERRY_LEDGER): "
            "psycopg is bundled for a PostgreSQL one, or when unknown.",
        ),
        click.option(
            "--postgres/--no-postgres",
            default=None,
            help="Bundle psycopg (the PostgreSQL ledger) or not, whatever the ledger.",
        ),
        click.option(
            "--with",
            "extra",
            multiple=True,
            metavar="REQ",
            help="Another requirement to bundle, e.g. a handler sink's dependency (repeatable).",
        ),
        click.option(
            "--constraints",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Pinned versions (default: deploy/constraints.txt of the checkout).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def resolve_needs(
    config: Path | None, extras: tuple[str, ...], ledger: str | None, postgres: bool | None
) -> packaging.Needs:
    """The extras and PostgreSQL choice for the command line's options."""
    needs = packaging.needs_of(pipeline_for(config), ledger)
    needs.extras |= set(extras)
    if postgres is not None:
        needs.postgres = postgres
    return needs


def report(built: packaging.Built, needs: packaging.Needs, what: str, as_json: bool) -> None:
    """Print what was built: sizes, contents, and why."""
    if as_json:
        emit_json(
            {
                "path": str(built.path),
                "zipped_bytes": built.zipped_bytes,
                "unzipped_bytes": built.unzipped_bytes,
                "files": built.files,
                "extras": built.extras,
                "postgres": needs.postgres,
                "packages": built.packages,
                "unpinned": built.unpinned,
            }
        )
    err.print(
        f"wrote {built.path}: {human_bytes(built.zipped_bytes)} zipped, "
        f"{human_bytes(built.unzipped_bytes)} unzipped, {built.files} files, "
        f"{len(built.packages)} distributions for {what}",
        soft_wrap=True,
    )
    extras = ", ".join(built.extras) or "none"
    why = f" ({'; '.join(needs.reasons)})" if needs.reasons else ""
    err.print(f"extras: {extras}; PostgreSQL ledger: {'yes' if needs.postgres else 'no'}{why}")
    if built.unpinned:
        err.print(
            f"[yellow]warning:[/] not pinned by the constraints file: {', '.join(built.unpinned)} "
            "(run logferry package lock to pin them)",
            soft_wrap=True,
        )


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
@content_options
@handle_errors
def lambda_(
    out: Path,
    arch: str,
    python_version: str,
    config: Path | None,
    extras: tuple[str, ...],
    ledger: str | None,
    postgres: bool | None,
    extra: tuple[str, ...],
    constraints: Path | None,
    as_json: bool,
) -> None:
    """Write OUT (a .zip) for the handler logferry.serverless.aws_lambda.handler.

    Bundles logferry and what the pipeline needs as wheels for Lambda's platform, leaving
    out boto3 (the runtime has it) and the CLI's libraries. Refuses a package over 250 MB
    unzipped.
    """
    needs = resolve_needs(config, extras, ledger, postgres)
    built = packaging.build_lambda_zip(
        out,
        arch=arch,
        python_version=python_version,
        postgres=needs.postgres,
        extra=extra,
        extras=needs.extras,
        constraints=constraints or packaging.default_constraints(),
    )
    report(built, needs, f"{arch}/python{python_version}", as_json)
    if built.left_out:
        err.print(f"left out (the runtime or only the CLI has them): {', '.join(built.left_out)}")
    if built.zipped_bytes > packaging.DIRECT_UPLOAD_LIMIT:
        err.print(
            f"[yellow]warning:[/] over {human_bytes(packaging.DIRECT_UPLOAD_LIMIT)} zipped: upload it "
            "through S3 (logferry deploy aws and aws lambda update-function-code --s3-bucket do), "
            "not directly",
            soft_wrap=True,
        )


@package.command("zipapp")
@click.option(
    "-o",
    "--out",
    default="logferry.pyz",
    show_default=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write.",
)
@click.option(
    "--python-version",
    metavar="X.Y",
    help="The Python it will run with (default: this one); native wheels are built for it.",
)
@click.option(
    "--python",
    "interpreter",
    default="/usr/bin/env python3",
    show_default=True,
    help="The interpreter line (#!) of the file.",
)
@content_options
@handle_errors
def zipapp(
    out: Path,
    python_version: str | None,
    interpreter: str,
    config: Path | None,
    extras: tuple[str, ...],
    ledger: str | None,
    postgres: bool | None,
    extra: tuple[str, ...],
    constraints: Path | None,
    as_json: bool,
) -> None:
    """Write a single-file executable of the logferry command (a shiv zipapp).

    Run it as ./logferry.pyz or python3 logferry.pyz, without installing anything; it
    unpacks itself to ~/.shiv on first run. Built for this machine's platform.
    """
    needs = resolve_needs(config, extras, ledger, postgres)
    built = packaging.build_zipapp(
        out,
        python_version=python_version,
        interpreter=interpreter,
        postgres=needs.postgres,
        extra=extra,
        extras=needs.extras,
        constraints=constraints or packaging.default_constraints(),
    )
    report(built, needs, f"{os.uname().machine}/python{python_version or 'this Python'}", as_json)


@package.command("lock")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The constraints file to write (default: deploy/constraints.txt of the checkout).",
)
@handle_errors
def lock(out: Path | None) -> None:
    """Pin every requirement and extra (resolved from PyPI) in the constraints file."""
    if out is None:
        out = packaging.deploy_file("README.md").with_name("constraints.txt")
    pins = packaging.lock(out)
    err.print(f"wrote {out}: {len(pins)} pinned distributions")


__all__ = ["package"]
